"""The kubelet's newest probe failure per pod container, as evidence for liveness and readiness faults.

A pod's status says a container restarted or is not ready, never why; the kubelet's
`Unhealthy` Events do ("Liveness probe failed: HTTP probe failed with statuscode:
500"). The watch keeps the newest message per (pod, container, probe) and forgets a
pod's entries when the pod goes; a cap bounds the index in a cluster full of
failing probes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from datetime import datetime

from monitors.trim import EventView

EVENT_REASON = "Unhealthy"
PROBE_KINDS = ("Liveness", "Readiness", "Startup")
MAX_PODS = 20_000

ProbeMessages = Mapping[tuple[str, str], str]  # (container, probe kind) -> the kubelet's message


class ProbeEvents:
    """(namespace, pod) -> (container, probe kind) -> newest message; safe to share between watch threads."""

    def __init__(self, max_pods: int = MAX_PODS) -> None:
        self._max_pods = max_pods
        self._pods: dict[tuple[str, str], dict[tuple[str, str], tuple[datetime | None, str]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pods)

    def record(self, event: EventView) -> None:
        kind = probe_kind(event.message)
        container = event.container
        if event.reason != EVENT_REASON or event.kind != "Pod" or kind is None or container is None:
            return
        key = (event.namespace, event.object_name)
        with self._lock:
            if key not in self._pods and len(self._pods) >= self._max_pods:
                del self._pods[next(iter(self._pods))]  # a safety cap: the oldest pod's messages go
            messages = self._pods.setdefault(key, {})
            known = messages.get((container, kind))
            if known is None or known[0] is None or event.last_seen is None or event.last_seen >= known[0]:
                messages[(container, kind)] = (event.last_seen, event.message)

    def of(self, namespace: str, pod: str) -> ProbeMessages:
        with self._lock:
            return {key: message for key, (_, message) in self._pods.get((namespace, pod), {}).items()}

    def forget(self, namespace: str, pod: str) -> None:
        with self._lock:
            self._pods.pop((namespace, pod), None)

    def replace(self, namespace: str | None, events: Iterable[EventView]) -> None:
        """After a re-list: the Unhealthy Events of `namespace` (all when None) are exactly these."""
        with self._lock:
            self._pods = {k: v for k, v in self._pods.items() if namespace is not None and k[0] != namespace}
        for event in events:
            self.record(event)


def probe_kind(message: str) -> str | None:
    """`Liveness probe failed: ...` -> "Liveness"."""
    first = message.split(" ", 1)[0]
    return first if first in PROBE_KINDS else None
