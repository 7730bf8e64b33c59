"""Since when a workload has been in a bad state that its status carries no timestamp for.

A Deployment's Available condition says since when it is unavailable; a StatefulSet
or DaemonSet has only counts. The watch loop asks here instead: the first time it
saw the state is its onset, forgotten once the state ends or the object goes. After
a restart the onset is the first observation, so a grace period starts over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

from core.models import ObjectRef


class Onsets:
    """One timestamp per workload in a bad state; safe to share between watch threads."""

    def __init__(self) -> None:
        self._since: dict[ObjectRef, datetime] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._since)

    def track(self, subject: ObjectRef, active: bool, now: datetime) -> datetime | None:
        """Since when `subject` has been in the state (None when it is not in it now)."""
        with self._lock:
            if not active:
                self._since.pop(subject, None)
                return None
            return self._since.setdefault(subject, now)

    def forget(self, subject: ObjectRef) -> None:
        with self._lock:
            self._since.pop(subject, None)

    def retain(self, keep: Callable[[ObjectRef], bool]) -> None:
        """Drop the onsets of every subject for which `keep` is False (after a re-list)."""
        with self._lock:
            self._since = {s: t for s, t in self._since.items() if keep(s)}
