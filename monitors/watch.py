"""The watch loop: list, then watch, Pods, ReplicaSets, Deployments and Jobs, and feed the detector.

Each stream lists once and watches from the list's resourceVersion. When the
version has expired (410 Gone) it lists again and reconciles: objects that
disappeared meanwhile are forgotten. When the connection drops (an API server
restart) it reconnects with capped exponential back-off, forever until stopped,
and also lists again, so a fault that is still present is never missed and never
reported twice (the detector is level-based). Objects stay plain dicts, as the
API sent them, until `trim` makes views of them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception, wait_exponential

from core.config import Settings
from core.models import ObjectRef
from monitors.detector import Clock, FaultDetector, utc_now
from monitors.owners import OwnerIndex
from monitors.patterns import deployment_faults, deployment_recheck_at, job_faults, pod_faults, pod_recheck_at
from monitors.rechecks import Rechecks
from monitors.scope import Scope, namespace_in_scope, opted_out, watched_namespaces
from monitors.trim import DeploymentView, JobView, PodView, ReplicaSetView

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 500
CONNECT_TIMEOUT_SECONDS = 5.0
LIST_READ_TIMEOUT_SECONDS = 60.0

ApiObject = dict[str, Any]


@dataclass
class _Stream:
    """One list+watch: a kind, in one namespace or in all of them."""

    kind: str
    list_fn: Callable[..., Any]
    namespace: str | None = None
    synced: threading.Event = field(default_factory=threading.Event)

    @property
    def args(self) -> dict[str, Any]:
        return {} if self.namespace is None else {"namespace": self.namespace}

    def __str__(self) -> str:
        return f"{self.kind} watch ({self.namespace or 'all namespaces'})"


class Watcher:
    """Runs one thread per stream plus a ticker; `start()` and `stop()` from any thread.

    Size the ApiClient's connection pool (`connection_pool_maxsize`) for one
    long-lived connection per stream, or urllib3 will warn and open extra ones.
    """

    def __init__(
        self,
        settings: Settings,
        api_client: client.ApiClient,
        detector: FaultDetector,
        *,
        clock: Clock = utc_now,
        tick_seconds: float = 0.2,
        watch_timeout_seconds: int = 300,
        max_backoff_seconds: float = 10.0,
    ) -> None:
        self.settings = settings
        self.detector = detector
        self.owners = OwnerIndex()
        self.scope = Scope(settings)
        self.rechecks = Rechecks()
        self.reconnects = 0  # streams lost to an error (connection dropped, API server restarted, ...)
        self.relists = 0  # lists after a stream's first one, for any reason (410 Gone included)
        self._clock = clock
        self._tick_seconds = tick_seconds
        self._watch_timeout = watch_timeout_seconds
        self._max_backoff = max_backoff_seconds
        self._keep = (settings.ignore_annotation,)
        self._streams = self._plan(api_client)
        self._handlers: dict[str, Callable[[str, ApiObject, datetime], None]] = {
            "ReplicaSet": self._on_replica_set,
            "Deployment": self._on_deployment,
            "Job": self._on_job,
            "Pod": self._on_pod,
        }
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: set[watch.Watch] = set()
        self._lock = threading.Lock()

    def _plan(self, api: client.ApiClient) -> list[_Stream]:
        core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
        kinds = (
            ("ReplicaSet", apps.list_replica_set_for_all_namespaces, apps.list_namespaced_replica_set),
            ("Deployment", apps.list_deployment_for_all_namespaces, apps.list_namespaced_deployment),
            ("Job", batch.list_job_for_all_namespaces, batch.list_namespaced_job),
            ("Pod", core.list_pod_for_all_namespaces, core.list_namespaced_pod),
        )
        namespaces = watched_namespaces(self.settings)
        if namespaces is None:
            return [_Stream(kind, every) for kind, every, _ in kinds]
        return [_Stream(kind, one, ns) for kind, _, one in kinds for ns in namespaces]

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._run, args=(s,), name=f"amos-{s.kind.lower()}-watch", daemon=True)
            for s in self._streams
        ]
        self._threads.append(threading.Thread(target=self._tick_loop, name="amos-detector-tick", daemon=True))
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._lock:
            for stream in self._watches:
                stream.stop()  # type: ignore[no-untyped-call]
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def wait_synced(self, timeout: float) -> bool:
        """Whether every stream has listed once within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        return all(s.synced.wait(max(0.0, deadline - time.monotonic())) for s in self._streams)

    # ---- list and watch ------------------------------------------------------------------------
    def _run(self, stream: _Stream) -> None:
        """Start over (list, then watch) until stopped; failures back off, a clean restart does not."""
        retrying = Retrying(  # each call starts a fresh back-off
            retry=retry_if_exception(lambda _: not self._stop.is_set()),
            wait=wait_exponential(multiplier=0.2, max=self._max_backoff),
            sleep=self._sleep,
            before_sleep=lambda state: log.info(
                "%s: %s; retrying (attempt %d)",
                stream,
                state.outcome.exception() if state.outcome else "failed",
                state.attempt_number,
            ),
            reraise=True,
        )
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # an error escapes tenacity only once we are stopping
                retrying(self._session, stream)

    def _session(self, stream: _Stream) -> None:
        """List and reconcile, then watch; return to list again, raise to back off first."""
        if self._stop.is_set():
            return
        if stream.synced.is_set():
            self._count("relists")
        version = self._list(stream)
        stream.synced.set()
        streaming_since = time.monotonic()
        try:
            self._watch(stream, version)
        except Exception as error:  # 410 Gone, connection reset, API server gone, read timeout, ...
            if self._stop.is_set():
                return
            if isinstance(error, ApiException) and error.status == 410:
                log.info("%s: resourceVersion expired; listing again", stream)
                return
            self._count("reconnects")
            if time.monotonic() - streaming_since < self._max_backoff:
                raise  # failing fast: back off before listing again
            log.info("%s lost after a healthy run (%s); listing again", stream, error)

    def _list(self, stream: _Stream) -> str:
        items: list[ApiObject] = []
        token: str | None = None
        while True:
            response = stream.list_fn(
                **stream.args, limit=LIST_PAGE_SIZE, _continue=token, _preload_content=False,
                _request_timeout=(CONNECT_TIMEOUT_SECONDS, LIST_READ_TIMEOUT_SECONDS),
            )
            page = json.loads(response.data)
            items.extend(page.get("items") or [])
            token = page["metadata"].get("continue")
            if not token:
                self._reconcile(stream, items, self._clock())
                return str(page["metadata"]["resourceVersion"])

    def _watch(self, stream: _Stream, version: str) -> None:
        """Follow the stream from `version`; the server ends each request after the timeout, we go on."""
        watcher = watch.Watch(return_type=object)  # type: ignore[no-untyped-call]  # events stay dicts
        with self._lock:
            self._watches.add(watcher)
        try:
            while not self._stop.is_set():
                for event in watcher.stream(  # type: ignore[no-untyped-call]
                    stream.list_fn, **stream.args, resource_version=version, allow_watch_bookmarks=True,
                    timeout_seconds=self._watch_timeout,
                    _request_timeout=(CONNECT_TIMEOUT_SECONDS, self._watch_timeout + 30.0),
                ):
                    if event["type"] != "BOOKMARK":
                        self._dispatch(stream.kind, event["type"], event["raw_object"], self._clock())
                version = watcher.resource_version or version
        finally:
            with self._lock:
                self._watches.discard(watcher)

    def _reconcile(self, stream: _Stream, items: list[ApiObject], now: datetime) -> None:
        """Make state match a fresh list: forget what is gone, then take every object as new."""
        in_scope = [o for o in items if namespace_in_scope(o["metadata"].get("namespace", ""), self.settings)]
        if stream.kind == "ReplicaSet":
            self.owners.replace(stream.namespace, (ReplicaSetView.from_api(o) for o in in_scope))
            return
        present = {_ref(stream.kind, o) for o in in_scope}
        for gone in self.detector.subjects(stream.kind, stream.namespace) - present:
            self.detector.forget(gone, now)
        self.rechecks.cancel_where(
            lambda s: s.kind != stream.kind or s in present or stream.namespace not in (None, s.namespace)
        )
        if stream.kind in ("Deployment", "Job"):  # before any pod is judged against it
            opted = [_ref(stream.kind, o) for o in in_scope if opted_out(o["metadata"].get("annotations") or {},
                                                                         self.settings)]
            self.scope.replace_workloads(stream.kind, stream.namespace, opted)
        for obj in in_scope:
            self._dispatch(stream.kind, "ADDED", obj, now)

    # ---- events ----------------------------------------------------------------------------------
    def _dispatch(self, kind: str, event_type: str, obj: ApiObject, now: datetime) -> None:
        meta = obj.get("metadata") or {}
        if not namespace_in_scope(meta.get("namespace", ""), self.settings):
            return
        try:
            self._handlers[kind](event_type, obj, now)
        except ValidationError as error:  # an object shaped unlike the API's: skip it, keep watching
            log.warning("skipping %s %s/%s: %s", kind, meta.get("namespace"), meta.get("name"), error)

    def _on_replica_set(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        replica_set = ReplicaSetView.from_api(obj)
        if event_type == "DELETED":
            self.owners.forget(replica_set.namespace, replica_set.name)
        else:
            self.owners.observe(replica_set)

    def _on_pod(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        pod = PodView.from_api(obj, self._keep)
        ref = ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name)
        if event_type == "DELETED":
            self.rechecks.cancel(ref)
            self.detector.forget(ref, now)
            return
        check = partial(self._evaluate_pod, pod)
        self.rechecks.set(ref, pod_recheck_at(pod, self.settings), check, now)
        check(now)

    def _evaluate_pod(self, pod: PodView, now: datetime) -> None:
        ref = ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name)
        workload = self.owners.workload_of(pod)
        covered = self.scope.covers(workload, pod.annotations)
        self.detector.observe(ref, pod_faults(pod, workload, now, self.settings) if covered else [], now)

    def _on_deployment(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        deployment = DeploymentView.from_api(obj, self._keep)
        ref = ObjectRef(kind="Deployment", namespace=deployment.namespace, name=deployment.name)
        if self._workload_gone_or_out(event_type, ref, deployment.annotations, now):
            return
        check = partial(self._evaluate_deployment, deployment)
        self.rechecks.set(ref, deployment_recheck_at(deployment, self.settings), check, now)
        check(now)

    def _evaluate_deployment(self, deployment: DeploymentView, now: datetime) -> None:
        ref = ObjectRef(kind="Deployment", namespace=deployment.namespace, name=deployment.name)
        self.detector.observe(ref, deployment_faults(deployment, now, self.settings), now)

    def _on_job(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        job = JobView.from_api(obj, self._keep)
        ref = ObjectRef(kind="Job", namespace=job.namespace, name=job.name)
        if not self._workload_gone_or_out(event_type, ref, job.annotations, now):
            self.detector.observe(ref, job_faults(job, now), now)

    def _workload_gone_or_out(self, event_type: str, ref: ObjectRef, annotations: dict[str, str], now: datetime) -> bool:
        """Deleted or opted out: drop its faults (its pods' too, for an opt-out) and stop here."""
        if event_type == "DELETED":
            self.scope.forget_workload(ref)
            self.rechecks.cancel(ref)
            self.detector.forget(ref, now)
            return True
        if self.scope.note_workload(ref, annotations):
            self.rechecks.cancel(ref)
            self.detector.forget_workload(ref, now)
            return True
        return False

    # ---- ticker ----------------------------------------------------------------------------------
    def _tick_loop(self) -> None:
        while not self._stop.wait(self._tick_seconds):
            now = self._clock()
            try:
                self.rechecks.run_due(now)
                self.detector.tick(now)
            except Exception:  # keep ticking: incidents of other workloads still need emitting
                log.exception("detector tick failed")

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)  # back-off that ends at once on stop()

    def _count(self, counter: str) -> None:
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)


def _ref(kind: str, obj: ApiObject) -> ObjectRef:
    return ObjectRef(kind=kind, namespace=obj["metadata"]["namespace"], name=obj["metadata"]["name"])
