"""Objects to look at again when a grace period ends, since no watch event will say so.

A pod stuck Unschedulable, or a Deployment short of replicas, becomes a fault by
time alone; the watch loop leaves a recheck here and the ticker runs it when due.
One entry per object, replaced by its next event, dropped when the object goes;
handlers update it before they report faults, so a stale recheck never has the last word.
A check may set its own next recheck (the lock is re-entrant).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from core.models import ObjectRef

Check = Callable[[datetime], None]


class Rechecks:
    def __init__(self) -> None:
        self._due: dict[ObjectRef, tuple[datetime, Check]] = {}
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._due)

    def set(self, subject: ObjectRef, due: datetime | None, check: Check, now: datetime) -> None:
        """Run `check(now)` at `due`; a due time already past (or None) cancels any recheck of `subject`."""
        with self._lock:
            if due is None or due <= now:
                self._due.pop(subject, None)
            else:
                self._due[subject] = (due, check)

    def cancel(self, subject: ObjectRef) -> None:
        with self._lock:
            self._due.pop(subject, None)

    def cancel_where(self, keep: Callable[[ObjectRef], bool]) -> None:
        """Drop the rechecks of every subject for which `keep` is False (after a re-list)."""
        with self._lock:
            self._due = {s: entry for s, entry in self._due.items() if keep(s)}

    def run_due(self, now: datetime) -> None:
        """Run the due checks under the lock, so an event handled meanwhile (which calls `set` first) wins."""
        with self._lock:
            for subject in [s for s, (when, _) in self._due.items() if when <= now]:
                self._due.pop(subject)[1](now)
