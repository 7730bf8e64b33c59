"""FailedCreate Events of the workloads whose status has no ReplicaFailure condition.

A ReplicaSet says in a condition that it cannot create pods; a StatefulSet, a
DaemonSet and a Job only emit Events ("exceeded quota", a LimitRange, an admission
webhook). This index keeps the newest such Event per workload and the latest view
of each workload that is short of pods (few, and small), so an Event that arrives
after the status can still be judged at once. A workload's entries go when it has
all its pods, or is deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from core import k8s
from core.models import ObjectRef
from monitors.trim import DaemonSetView, EventView, JobView, StatefulSetView

EVENT_REASON = "FailedCreate"

ShortView = StatefulSetView | DaemonSetView | JobView


class FailedCreates:
    """Workload -> its newest FailedCreate Event, and the views of workloads short of pods; thread-safe."""

    def __init__(self) -> None:
        self._events: dict[ObjectRef, EventView] = {}
        self._short: dict[ObjectRef, ShortView] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._events) + len(self._short)

    def record(self, event: EventView) -> ShortView | None:
        """Keep `event` if it is its workload's newest; return the workload's view if it is short of pods now."""
        if event.reason != EVENT_REASON or event.kind not in k8s.POD_CONTROLLER_KINDS:
            return None
        workload = ObjectRef(kind=event.kind, namespace=event.namespace, name=event.object_name)
        with self._lock:
            known = self._events.get(workload)
            if known is None or _not_older(event, known):
                self._events[workload] = event
            return self._short.get(workload)

    def note(self, workload: ObjectRef, view: ShortView, missing_pods: bool) -> EventView | None:
        """The workload's latest view; return its newest FailedCreate Event while it is short of pods."""
        with self._lock:
            if missing_pods:
                self._short[workload] = view
                return self._events.get(workload)
            self._short.pop(workload, None)
            self._events.pop(workload, None)
            return None

    def forget(self, workload: ObjectRef) -> None:
        with self._lock:
            self._short.pop(workload, None)
            self._events.pop(workload, None)

    def retain(self, keep: Callable[[ObjectRef], bool]) -> None:
        """Drop the views of every workload for which `keep` is False (after a re-list)."""
        with self._lock:
            self._short = {w: v for w, v in self._short.items() if keep(w)}

    def replace_events(self, namespace: str | None, events: Iterable[EventView]) -> list[ShortView]:
        """After a re-list of Events: they are exactly these; return the short workloads to judge again."""
        with self._lock:
            self._events = {w: e for w, e in self._events.items() if namespace is not None and w.namespace != namespace}
        touched = [self.record(event) for event in events]
        return list({id(v): v for v in touched if v is not None}.values())


def _not_older(event: EventView, known: EventView) -> bool:
    """Undated Events count as new: the controller has just written them."""
    return event.last_seen is None or known.last_seen is None or event.last_seen >= known.last_seen
