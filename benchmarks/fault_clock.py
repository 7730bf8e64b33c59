"""When each fault of a burst first became visible in the API, to the sub-second, seen by the driver's own watch.

Why: the API's status timestamps (`lastTransitionTime`, `startedAt`, ...) have whole seconds, so a
latency measured from them reads up to 1 s high (0.5 s on average). A watch on only the pods of the
broken workloads (selected by `BURST_LABEL`, set in the burst's template patch) costs the lab almost
nothing and timestamps each status write as it is delivered: the earliest moment any watching agent
could have known. It applies the same `pod_faults` patterns as AMOS and the baseline, so a fault
counts from the same status write for all three.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from kubernetes import client, watch

from benchmarks.kube import raw_json
from core.config import Settings
from monitors.owners import OwnerIndex
from monitors.patterns import pod_faults
from monitors.trim import PodView

log = logging.getLogger(__name__)

BURST_LABEL = "benchmarks.amos.io/burst"  # on the pod template of each broken Deployment
WATCH_SECONDS = 10  # one watch request; the loop starts another until stopped (and stop waits for it)

Key = tuple[str, str]  # (Deployment name, fault kind)


class FaultClock:
    """Watches the burst's pods; `seen()[(deployment, kind)]` is the epoch time a fault was first delivered."""

    def __init__(self, api: client.ApiClient, settings: Settings, kinds: frozenset[str]) -> None:
        self._first_seen: dict[Key, float] = {}
        self.relists = 0  # watches started afresh (an expired version): faults first seen after one read low
        self._core = client.CoreV1Api(api)
        self._settings = settings
        self._kinds = kinds
        self._owners = OwnerIndex()  # never fed: Deployments resolve by ReplicaSet name
        self._watch = watch.Watch(return_type=object)  # type: ignore[no-untyped-call]  # events stay dicts
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Lists the burst's pods (none yet) here, so that the watch begins at a version before the burst."""
        listing = raw_json(self._core.list_pod_for_all_namespaces, label_selector=BURST_LABEL, limit=1)
        self._thread = threading.Thread(
            target=self._loop, args=(listing["metadata"]["resourceVersion"],), name="fault-clock", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._watch.stop()  # type: ignore[no-untyped-call]
        if self._thread is not None:
            self._thread.join(WATCH_SECONDS + 5)

    def seen(self) -> dict[Key, float]:
        with self._lock:
            return dict(self._first_seen)

    def _loop(self, version: str | None) -> None:
        while not self._stop.is_set():
            try:
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self._core.list_pod_for_all_namespaces,
                    label_selector=BURST_LABEL,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                ):
                    if event is None:  # a line that is not an event (the last, cut short, when stopped)
                        continue
                    obj: dict[str, Any] = event["raw_object"]
                    version = obj["metadata"].get("resourceVersion", version)
                    self._record(obj, time.time())
            except Exception as error:  # noqa: BLE001 - a clock that stops must say so, not end the thread
                if self._stop.is_set():
                    return
                log.warning("fault clock: the watch failed (%s); watching again", error)
                if isinstance(error, client.ApiException) and error.status == HTTPStatus.GONE:
                    version = None  # pods not seen yet are then timed when listed again: later than they were
                    self.relists += 1
                self._stop.wait(1.0)

    def _record(self, obj: dict[str, Any], delivered: float) -> None:
        pod = PodView.from_api(obj, (self._settings.ignore_annotation,))
        for fault in pod_faults(pod, self._owners.workload_of(pod), datetime.now(UTC), self._settings):
            key = (fault.workload.name, fault.kind.value)
            if fault.kind.value in self._kinds:
                with self._lock:
                    self._first_seen.setdefault(key, delivered)
