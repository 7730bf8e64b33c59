"""Fires `on_healthy` once per (workload, revision) when that revision turns healthy and stays so.

Remembers, per workload, since when its current revision has looked healthy and
which revision it last reported, so a workload that stays healthy is reported
once, a flapping one is not re-reported, and a rollback to an earlier revision is
reported again. One entry per workload, dropped when it is deleted; after a
restart every healthy workload is reported once more (the consumer's write is
idempotent).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from core.models import ObjectRef
from monitors.health import HealthyRevision, is_stable, stable_at
from monitors.revisions import Revision

log = logging.getLogger(__name__)

OnHealthy = Callable[[HealthyRevision], None]


class KnownGood:
    def __init__(self, on_healthy: OnHealthy, window_seconds: float) -> None:
        self._on_healthy = on_healthy
        self._window = timedelta(seconds=window_seconds)
        self._since: dict[ObjectRef, tuple[str, datetime]] = {}  # workload -> (template hash, healthy since)
        self._reported: dict[ObjectRef, str] = {}  # workload -> template hash last reported
        self._lock = threading.Lock()

    def observe(
        self, workload: ObjectRef, current: Revision | None, last_fault_at: datetime | None, now: datetime
    ) -> datetime | None:
        """`current` is the healthy revision (None: not healthy now); return when to look again, if ever."""
        with self._lock:
            if current is None:
                self._since.pop(workload, None)
                return None
            known = self._since.get(workload)
            if known is None or known[0] != current.template_hash:
                known = self._since[workload] = (current.template_hash, now)
            if self._reported.get(workload) == current.template_hash:
                return None
            if not is_stable(known[1], last_fault_at, now, self._window):
                return stable_at(known[1], last_fault_at, self._window)  # a fault now: look again a window later
            self._reported[workload] = current.template_hash
        healthy = HealthyRevision(
            workload=workload,
            revision=current.number,
            template_hash=current.template_hash,
            source=current.source,
            observed_at=now,
        )
        try:
            self._on_healthy(healthy)
        except Exception:  # a failing consumer must not stop the watch
            log.exception("on_healthy failed for %s", workload)
        return None

    def forget(self, workload: ObjectRef) -> None:
        with self._lock:
            self._since.pop(workload, None)
            self._reported.pop(workload, None)

    def retain(self, keep: Callable[[ObjectRef], bool]) -> None:
        """Drop what is known of every workload for which `keep` is False (after a re-list)."""
        with self._lock:
            self._since = {w: v for w, v in self._since.items() if keep(w)}
            self._reported = {w: v for w, v in self._reported.items() if keep(w)}
