"""The watch loop: list, then watch, every workload kind and its pods, and feed the detector.

Streams: ReplicaSets, Deployments, StatefulSets, DaemonSets, CronJobs, Jobs and
Pods; FailedCreate Events (the only place a StatefulSet, DaemonSet or Job says it
cannot create pods) and Unhealthy Events (why a probe failed); plus
ControllerRevisions when someone listens for known-good revisions.
The pod stream lists only after the others (or after a timeout), so its first
pods are judged against filled owner indexes and opt-outs. A stream the role may
not list (403) counts as synced, is retried slowly, and says once what is not
detected without it.

Each stream is one loop of requests: a list (paged, each page trimmed to views as
it arrives), then watch requests from the list's resourceVersion, each ended by the
server after its timeout and followed at once by the next. When the version has
expired (410 Gone) it lists again and reconciles: objects that disappeared
meanwhile are forgotten. When the connection drops (an API server restart) it
reconnects with capped exponential back-off, forever until stopped, and also lists
again, so a fault that is still present is never missed and never reported twice
(the detector is level-based). Objects are plain dicts, as the API sent them, only
until `trim` makes views of them. Each stream remembers when it was last seen alive,
so `problems` can tell a quiet stream from a stalled one (`stalls`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Generic, TypeVar

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception, wait_exponential

from core import api_errors, k8s
from core.clock import Clock, utc_now
from core.config import Settings
from core.models import ObjectRef
from core.workload_health import HEALTH_KINDS, ListingState, WorkloadListing
from monitors.cronjobs import CronJobRuns, RunOutcome, cron_job_faults, latest_finished
from monitors.detector import FaultDetector
from monitors.failed_creates import EVENT_REASON as FAILED_CREATE
from monitors.failed_creates import FailedCreates
from monitors.health import (
    STABLE_WINDOW_SECONDS,
    HealthyRevision,
    daemonset_healthy,
    deployment_healthy,
    statefulset_healthy,
)
from monitors.known_good import KnownGood, OnHealthy
from monitors.onsets import Onsets
from monitors.owners import OwnerIndex, workload_of_job
from monitors.patterns import (
    daemonset_faults,
    daemonset_missing_pods,
    daemonset_unavailable,
    deployment_faults,
    deployment_recheck_at,
    failed_create_event_faults,
    failed_create_faults,
    job_faults,
    job_missing_pods,
    pod_faults,
    pod_recheck_at,
    statefulset_faults,
    statefulset_missing_pods,
    statefulset_unavailable,
    workload_recheck_at,
)
from monitors.probe_events import EVENT_REASON as UNHEALTHY
from monitors.probe_events import ProbeEvents
from monitors.rechecks import Rechecks
from monitors.revisions import Revision, RevisionIndex
from monitors.scope import Scope, namespace_in_scope, opted_out, watched_namespaces
from monitors.stalls import StreamState, stream_problem
from monitors.trim import (
    ControllerRevisionView,
    CronJobView,
    DaemonSetView,
    DeploymentView,
    EventView,
    JobView,
    ObjectView,
    PodView,
    ReplicaSetView,
    StatefulSetView,
)
from monitors.workload_cache import HEALTH_VIEWS, WorkloadCache

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 500
CONNECT_TIMEOUT_SECONDS = 5.0
LIST_READ_TIMEOUT_SECONDS = 60.0
WATCH_TIMEOUT_SECONDS = 300  # the server ends each watch request after this; the stream starts the next
OWNERS_SYNC_TIMEOUT_SECONDS = 30.0  # the pod stream's first list waits this long for the owner streams
FORBIDDEN_RETRY_SECONDS = 300.0
REVISION_RETRY = timedelta(seconds=5)
ERROR_SUMMARY_CHARS = 200
_SELECTORS = {"FailedCreateEvent": f"reason={FAILED_CREATE}", "UnhealthyEvent": f"reason={UNHEALTHY}"}
_UNDETECTED = {  # what goes unseen without a stream, for the one warning a forbidden stream gives
    "FailedCreateEvent": "FailedCreate of StatefulSets, DaemonSets and Jobs is",
    "UnhealthyEvent": "the probe messages of liveness and readiness faults are",
    "ControllerRevision": "the known-good revision of a DaemonSet is",
}

ApiObject = dict[str, Any]
Trimmed = ObjectView | EventView  # what a listed or watched object is kept as
V = TypeVar("V", bound=Trimmed)
_HANDLED_PER_PAGE = frozenset({"Pod"})  # a relist takes these as they come and keeps only their refs


@dataclass
class _Stream:
    """One list+watch: a kind, in one namespace or in all of them."""

    kind: str
    list_fn: Callable[..., Any]
    namespace: str | None = None
    field_selector: str | None = None
    synced: threading.Event = field(default_factory=threading.Event)
    forbidden: bool = False
    version: str | None = None  # where the next watch request starts; None: list first
    alive_at: float = field(default_factory=time.monotonic)  # last list, event, bookmark or clean end of a watch
    failure: str | None = None  # the last error since then

    @property
    def args(self) -> dict[str, Any]:
        args: dict[str, Any] = {} if self.namespace is None else {"namespace": self.namespace}
        return args if self.field_selector is None else args | {"field_selector": self.field_selector}

    @property
    def watch_operation(self) -> str:
        """`list_namespaced_pod` watched reads as `watch_namespaced_pod` (the API's own name for it)."""
        return self.list_fn.__name__.replace("list_", "watch_", 1)

    def alive(self) -> None:
        self.alive_at, self.failure = time.monotonic(), None

    def __str__(self) -> str:
        return f"{self.kind} watch ({self.namespace or 'all namespaces'})"


@dataclass(frozen=True)
class _Kind(Generic[V]):
    """How a stream's objects are trimmed to views, and what handles each view."""

    trim: Callable[[ApiObject], V]
    handle: Callable[[str, V, datetime], None]


class Watcher:
    """Runs one thread per stream plus a ticker; `start()` and `stop()` from any thread.

    Size the ApiClient's connection pool (`connection_pool_maxsize`) for one
    long-lived connection per stream, or urllib3 will warn and open extra ones.
    Failed list and watch calls are reported to the client's observer (`core.api_errors`).
    """

    def __init__(
        self,
        settings: Settings,
        api_client: client.ApiClient,
        detector: FaultDetector,
        *,
        clock: Clock = utc_now,
        tick_seconds: float = 0.2,
        watch_timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
        max_backoff_seconds: float = 10.0,
        on_healthy: OnHealthy | None = None,
        stable_window_seconds: float = STABLE_WINDOW_SECONDS,
    ) -> None:
        """`on_healthy`, when given, hears of each revision that turned healthy and stayed so, on a thread of its own."""
        self.settings = settings
        self.detector = detector
        self.owners = OwnerIndex()
        self.scope = Scope(settings)
        self.rechecks = Rechecks()
        self.onsets = Onsets()
        self.runs = CronJobRuns()
        self.revisions = RevisionIndex()
        self.failed_creates = FailedCreates()
        self.probe_events = ProbeEvents()
        self.workload_health = WorkloadCache()  # what outage detection reads: `workloads`
        self._on_healthy = on_healthy
        self._healthy: queue.Queue[HealthyRevision] = queue.Queue()  # delivered off the watch and tick threads
        self.known_good = KnownGood(self._healthy.put, stable_window_seconds) if on_healthy is not None else None
        self.reconnects = 0  # streams lost to an error (connection dropped, API server restarted, ...)
        self.relists = 0  # lists after a stream's first one, for any reason (410 Gone included)
        self._api = api_client
        self._clock = clock
        self._tick_seconds = tick_seconds
        self._watch_timeout = watch_timeout_seconds
        self._max_backoff = max_backoff_seconds
        keep = (settings.ignore_annotation,)
        self._streams = self._plan(api_client)
        self._kinds: dict[str, _Kind[Any]] = {
            "ReplicaSet": _Kind(partial(ReplicaSetView.from_api, keep_annotations=keep), self._on_replica_set),
            "ControllerRevision": _Kind(ControllerRevisionView.from_api, self._on_controller_revision),
            "Deployment": _Kind(partial(DeploymentView.from_api, keep_annotations=keep), self._on_deployment),
            "StatefulSet": _Kind(partial(StatefulSetView.from_api, keep_annotations=keep), self._on_stateful_set),
            "DaemonSet": _Kind(partial(DaemonSetView.from_api, keep_annotations=keep), self._on_daemon_set),
            "CronJob": _Kind(partial(CronJobView.from_api, keep_annotations=keep), self._on_cron_job),
            "Job": _Kind(partial(JobView.from_api, keep_annotations=keep), self._on_job),
            "Pod": _Kind(partial(PodView.from_api, keep_annotations=keep), self._on_pod),
            "FailedCreateEvent": _Kind(EventView.from_api, self._on_failed_create_event),
            "UnhealthyEvent": _Kind(EventView.from_api, self._on_unhealthy_event),
        }
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._watches: set[watch.Watch] = set()
        self._lock = threading.Lock()

    def _plan(self, api: client.ApiClient) -> list[_Stream]:
        core, apps, batch = client.CoreV1Api(api), client.AppsV1Api(api), client.BatchV1Api(api)
        kinds = [
            ("ReplicaSet", apps.list_replica_set_for_all_namespaces, apps.list_namespaced_replica_set),
            ("Deployment", apps.list_deployment_for_all_namespaces, apps.list_namespaced_deployment),
            ("StatefulSet", apps.list_stateful_set_for_all_namespaces, apps.list_namespaced_stateful_set),
            ("DaemonSet", apps.list_daemon_set_for_all_namespaces, apps.list_namespaced_daemon_set),
            ("CronJob", batch.list_cron_job_for_all_namespaces, batch.list_namespaced_cron_job),
            ("Job", batch.list_job_for_all_namespaces, batch.list_namespaced_job),
            ("Pod", core.list_pod_for_all_namespaces, core.list_namespaced_pod),
            ("FailedCreateEvent", core.list_event_for_all_namespaces, core.list_namespaced_event),
            ("UnhealthyEvent", core.list_event_for_all_namespaces, core.list_namespaced_event),
        ]
        if self.known_good is not None:  # only known-good revisions need them
            kinds.insert(
                1,
                (
                    "ControllerRevision",
                    apps.list_controller_revision_for_all_namespaces,
                    apps.list_namespaced_controller_revision,
                ),
            )
        namespaces = watched_namespaces(self.settings)
        if namespaces is None:
            return [_Stream(kind, every, None, _SELECTORS.get(kind)) for kind, every, _ in kinds]
        return [_Stream(kind, one, ns, _SELECTORS.get(kind)) for kind, _, one in kinds for ns in namespaces]

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        for stream in self._streams:  # every start lists first
            stream.version = None
            stream.alive()
        self._threads = [
            threading.Thread(target=self._run, args=(s,), name=f"amos-{s.kind.lower()}-watch", daemon=True)
            for s in self._streams
        ]
        self._threads.append(threading.Thread(target=self._tick_loop, name="amos-detector-tick", daemon=True))
        if self._on_healthy is not None:
            self._threads.append(threading.Thread(target=self._deliver_healthy, name="amos-known-good", daemon=True))
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

    @property
    def forbidden_kinds(self) -> list[str]:
        """Kinds the role may not list or watch right now (their faults go undetected)."""
        return sorted({s.kind for s in self._streams if s.forbidden})

    def wait_synced(self, timeout: float) -> bool:
        """Whether every stream has listed once within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        return all(s.synced.wait(max(0.0, deadline - time.monotonic())) for s in self._streams)

    def workloads(self, namespace: str) -> WorkloadListing:
        """The namespace's workloads as last listed or watched (a `WorkloadHealthSource`; no API call).

        NOT_YET until every stream that counts has listed it (or when none watches it); UNREADABLE while
        the role may not list one of them, so outage detection is skipped rather than guessed."""
        in_scope = namespace_in_scope(namespace, self.settings)
        streams = [s for s in self._streams if in_scope and s.kind in HEALTH_KINDS and s.namespace in (None, namespace)]
        forbidden = sorted({s.kind for s in streams if s.forbidden})
        if forbidden:
            reason = f"the role may not list or watch {', '.join(forbidden)}"
            return WorkloadListing(namespace=namespace, state=ListingState.UNREADABLE, reason=reason)
        if {s.kind for s in streams} != set(HEALTH_KINDS) or not all(s.synced.is_set() for s in streams):
            return WorkloadListing(namespace=namespace, state=ListingState.NOT_YET, reason="not listed yet")
        workloads = self.workload_health.of(namespace)
        return WorkloadListing(namespace=namespace, state=ListingState.LISTED, workloads=workloads)

    def problems(self) -> list[str]:
        """One line per stream that cannot be trusted now: not listed yet, or stalled (see `monitors.stalls`)."""
        now = time.monotonic()
        states = [
            StreamState(
                stream=str(s),
                listed=s.synced.is_set(),
                forbidden=s.forbidden,
                silent_seconds=now - s.alive_at,
                failure=s.failure,
            )
            for s in self._streams
        ]
        return [line for line in (stream_problem(state, self._watch_timeout) for state in states) if line]

    # ---- list and watch ------------------------------------------------------------------------
    def _run(self, stream: _Stream) -> None:
        """One request after another until stopped; a failure backs off first, a clean end does not."""
        retrying = Retrying(  # each call starts a fresh back-off
            retry=retry_if_exception(lambda _: not self._stop.is_set()),
            wait=wait_exponential(multiplier=0.2, max=self._max_backoff),
            sleep=self._sleep,
            before_sleep=lambda state: log.debug("%s: retrying (attempt %d)", stream, state.attempt_number),
            reraise=True,
        )
        while not self._stop.is_set():
            with contextlib.suppress(Exception):  # an error escapes tenacity only once we are stopping
                retrying(self._request, stream)

    def _request(self, stream: _Stream) -> None:
        """List when the stream has no version to watch from (first, after a 410 or a lost stream), else watch."""
        if self._stop.is_set():
            return
        if stream.version is None:
            self._sync(stream)
        else:
            self._watch(stream)

    def _sync(self, stream: _Stream) -> None:
        """List and reconcile, to watch from the list's version next; a forbidden stream is retried slowly."""
        if stream.synced.is_set():
            self._count("relists")
        elif stream.kind == "Pod":
            self._wait_for_owner_streams()
        present: set[ObjectRef] = set()
        views: list[Trimmed] = []

        def take(page: list[Trimmed]) -> None:
            present.update(ObjectRef(kind=stream.kind, namespace=v.namespace, name=v.name) for v in page)
            if stream.kind in _HANDLED_PER_PAGE:
                self._handle_all(stream.kind, page, self._clock())
            else:
                views.extend(page)

        try:
            version = self._list(stream, take)
            self._reconcile(stream, present, views, self._clock())
        except Exception as error:
            self._failed(stream, stream.list_fn.__name__, error)
            if not (isinstance(error, ApiException) and error.status == 403):
                raise
            if not stream.forbidden:
                log.warning(
                    "%s: forbidden (%s); %s not detected until the role allows list and watch",
                    stream,
                    error.reason,
                    _UNDETECTED.get(stream.kind, f"{stream.kind} faults are"),
                )
            stream.forbidden = True
            stream.synced.set()
            stream.alive()  # an answer: the stream is not stuck, only refused
            self._sleep(FORBIDDEN_RETRY_SECONDS)
            return
        stream.forbidden = False
        stream.version = version
        stream.synced.set()
        stream.alive()

    def _wait_for_owner_streams(self) -> None:
        deadline = time.monotonic() + OWNERS_SYNC_TIMEOUT_SECONDS
        for other in self._streams:
            while other.kind != "Pod" and not other.synced.wait(0.2):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return

    def _list(self, stream: _Stream, take: Callable[[list[Trimmed]], None]) -> str:
        """Every object of the stream in scope, to `take` a page of views at a time; the list's resourceVersion.

        A raw page is gone before the next is asked for, so a first sync holds one page of JSON, not every page
        (issue 18: 518 MiB at 20,000 pods)."""
        token: str | None = None
        while True:
            response = stream.list_fn(
                **stream.args,
                limit=LIST_PAGE_SIZE,
                _continue=token,
                _preload_content=False,  # the client's model classes would cost more than the page itself
                _request_timeout=(CONNECT_TIMEOUT_SECONDS, LIST_READ_TIMEOUT_SECONDS),
            )
            page = json.loads(response.data)
            del response
            take(self._trim_all(stream.kind, page.get("items") or []))
            token, version = page["metadata"].get("continue"), page["metadata"]["resourceVersion"]
            del page
            if not token:
                return str(version)

    def _watch(self, stream: _Stream) -> None:
        """One watch request from the stream's version, until the server ends it after `timeoutSeconds`."""
        watcher = watch.Watch(return_type=object)  # type: ignore[no-untyped-call]  # events stay dicts
        with self._lock:
            self._watches.add(watcher)
        started = time.monotonic()
        try:
            for event in watcher.stream(  # type: ignore[no-untyped-call]
                stream.list_fn,
                **stream.args,
                resource_version=stream.version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout,
                _request_timeout=(CONNECT_TIMEOUT_SECONDS, self._watch_timeout + 30.0),
            ):
                stream.alive()
                if event["type"] != "BOOKMARK":
                    self._dispatch(stream.kind, event["type"], event["raw_object"], self._clock())
        except Exception as error:  # 410 Gone, connection reset, API server gone, read timeout, ...
            if self._stop.is_set():
                return
            stream.version = None  # list again: the version expired, or the lost stream missed events
            self._failed(stream, stream.watch_operation, error)
            if isinstance(error, ApiException) and error.status == 410:
                log.info("%s: resourceVersion expired; listing again", stream)
                return
            self._count("reconnects")
            if time.monotonic() - started < self._max_backoff:
                raise  # failing fast: back off before listing again
            log.info("%s lost after a healthy run; listing again", stream)
            return
        finally:
            with self._lock:
                self._watches.discard(watcher)
        stream.version = watcher.resource_version or stream.version
        stream.alive()  # the server ended the request: a healthy stream's cycle, however quiet its resource

    def _failed(self, stream: _Stream, operation: str, error: BaseException) -> None:
        """Remember the error for `problems`; a failed call goes to the client's observer, any other error here."""
        stream.failure = _summary(error)
        if isinstance(error, api_errors.CALL_FAILURES):  # else our handling of an answer failed
            api_errors.report(self._api, operation, error)
        elif not self._stop.is_set():
            log.warning("%s failed: %s", stream, stream.failure)

    def _reconcile(self, stream: _Stream, present: set[ObjectRef], views: list[Trimmed], now: datetime) -> None:
        """Make state match a fresh list of `present` objects: forget what is gone, then take every one of `views`
        as new (pods were, page by page, already: they outnumber the rest, and no index is replaced from them)."""
        kind, namespace = stream.kind, stream.namespace

        def kept(ref: ObjectRef) -> bool:
            return ref.kind != kind or ref in present or namespace not in (None, ref.namespace)

        if kind == "ReplicaSet":
            replica_sets = [v for v in views if isinstance(v, ReplicaSetView)]
            self.owners.replace(namespace, replica_sets)
            self.revisions.replace(kind, namespace, replica_sets)
        elif kind == "ControllerRevision":
            self.revisions.replace(kind, namespace, [v for v in views if isinstance(v, ControllerRevisionView)])
            return
        elif kind == "FailedCreateEvent":
            events = [v for v in views if isinstance(v, EventView)]
            for short in self.failed_creates.replace_events(namespace, events):
                self._evaluate_short(short, now)
            return
        elif kind == "UnhealthyEvent":
            self.probe_events.replace(namespace, [v for v in views if isinstance(v, EventView)])
            return
        elif kind == "Job":
            self.owners.replace(namespace, [v for v in views if isinstance(v, JobView)], kind="Job")
            self.runs.replace_active(namespace, {(ref.namespace, ref.name) for ref in present})
        elif kind == "CronJob":
            self.runs.forget_where(present, namespace)
        for gone in self.detector.subjects(kind, namespace) - present:
            self.detector.forget(gone, now)
        self.rechecks.cancel_where(kept)
        self.onsets.retain(kept)
        self.failed_creates.retain(kept)
        if self.known_good is not None:
            self.known_good.retain(kept)
        if kind in HEALTH_KINDS:
            self.workload_health.replace(kind, namespace, [v for v in views if isinstance(v, HEALTH_VIEWS)])
        if kind in k8s.WORKLOAD_KINDS:  # before any pod is judged against it
            opted = [
                ObjectRef(kind=kind, namespace=v.namespace, name=v.name)
                for v in views
                if isinstance(v, ObjectView) and opted_out(v.annotations, self.settings)
            ]
            self.scope.replace_workloads(kind, namespace, opted)
        self._handle_all(kind, views, now)

    # ---- events ----------------------------------------------------------------------------------
    def _trim_all(self, kind: str, objects: list[ApiObject]) -> list[Trimmed]:
        trimmed = (self._trim(kind, obj) for obj in objects)
        return [view for view in trimmed if view is not None]

    def _trim(self, kind: str, obj: ApiObject) -> Trimmed | None:
        """The object's view, or None when it is out of scope or shaped unlike the API's (skipped, watch goes on)."""
        meta = obj.get("metadata") or {}
        if not namespace_in_scope(meta.get("namespace", ""), self.settings):
            return None
        try:
            view: Trimmed = self._kinds[kind].trim(obj)
        except ValidationError as error:
            log.warning("skipping %s %s/%s: %s", kind, meta.get("namespace"), meta.get("name"), error)
            return None
        return view

    def _handle_all(self, kind: str, views: list[Trimmed], now: datetime) -> None:
        handle = self._kinds[kind].handle
        for view in views:
            handle("ADDED", view, now)

    def _dispatch(self, kind: str, event_type: str, obj: ApiObject, now: datetime) -> None:
        view = self._trim(kind, obj)
        if isinstance(view, HEALTH_VIEWS):
            self.workload_health.note(event_type, view)
        if view is not None:
            self._kinds[kind].handle(event_type, view, now)

    def _on_replica_set(self, event_type: str, replica_set: ReplicaSetView, now: datetime) -> None:
        ref = ObjectRef(kind="ReplicaSet", namespace=replica_set.namespace, name=replica_set.name)
        if event_type == "DELETED":
            self.owners.forget(replica_set.namespace, replica_set.name)
            self.revisions.forget(replica_set)
            self.detector.forget(ref, now)
            return
        self.owners.observe(replica_set)
        self.revisions.observe(replica_set)
        deployment = replica_set.deployment
        workload = ref if deployment is None else ObjectRef(kind="Deployment", namespace=ref.namespace, name=deployment)
        covered = self.scope.covers(workload, replica_set.annotations)
        self.detector.observe(ref, failed_create_faults(replica_set, ref, workload, now) if covered else [], now)

    def _on_controller_revision(self, event_type: str, revision: ControllerRevisionView, now: datetime) -> None:
        if event_type == "DELETED":
            self.revisions.forget(revision)
        else:
            self.revisions.observe(revision)

    def _on_pod(self, event_type: str, pod: PodView, now: datetime) -> None:
        ref = ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name)
        if event_type == "DELETED":
            self.rechecks.cancel(ref)
            self.probe_events.forget(pod.namespace, pod.name)
            self.detector.forget(ref, now)
            return
        check = partial(self._evaluate_pod, pod)
        self.rechecks.set(ref, pod_recheck_at(pod, self.settings), check, now)
        check(now)

    def _evaluate_pod(self, pod: PodView, now: datetime) -> None:
        ref = ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name)
        workload = self.owners.workload_of(pod)
        covered = self.scope.covers(workload, pod.annotations)
        faults = pod_faults(pod, workload, now, self.settings, self.probe_events.of(pod.namespace, pod.name))
        self.detector.observe(ref, faults if covered else [], now)

    def _on_deployment(self, event_type: str, deployment: DeploymentView, now: datetime) -> None:
        ref = ObjectRef(kind="Deployment", namespace=deployment.namespace, name=deployment.name)
        if not self._workload_gone_or_out(event_type, ref, deployment.annotations, now):
            self._evaluate_deployment(deployment, now)

    def _evaluate_deployment(self, deployment: DeploymentView, now: datetime) -> None:
        ref = ObjectRef(kind="Deployment", namespace=deployment.namespace, name=deployment.name)
        current, healthy = None, deployment_healthy(deployment)
        if healthy and deployment.revision and deployment.revision.isdigit():
            current = self.revisions.by_number(ref, int(deployment.revision))
        due = [
            deployment_recheck_at(deployment, self.settings),
            self._known_good(ref, current, now),
            self._revision_pending(healthy and current is None, now),
        ]
        self.rechecks.set(ref, _earliest(due), partial(self._evaluate_deployment, deployment), now)
        self.detector.observe(ref, deployment_faults(deployment, now, self.settings), now)

    def _on_stateful_set(self, event_type: str, sts: StatefulSetView, now: datetime) -> None:
        ref = ObjectRef(kind="StatefulSet", namespace=sts.namespace, name=sts.name)
        if not self._workload_gone_or_out(event_type, ref, sts.annotations, now):
            self._evaluate_stateful_set(sts, now)

    def _evaluate_stateful_set(self, sts: StatefulSetView, now: datetime) -> None:
        ref = ObjectRef(kind="StatefulSet", namespace=sts.namespace, name=sts.name)
        since = self.onsets.track(ref, statefulset_unavailable(sts), now)
        current = None
        if statefulset_healthy(sts):
            named = ObjectRef(kind="ControllerRevision", namespace=sts.namespace, name=sts.update_revision)
            current = self.revisions.by_name(ref, sts.update_revision) or Revision(named, None, sts.update_revision)
        due = [workload_recheck_at(since, self.settings), self._known_good(ref, current, now)]
        self.rechecks.set(ref, _earliest(due), partial(self._evaluate_stateful_set, sts), now)
        event = self.failed_creates.note(ref, sts, statefulset_missing_pods(sts))
        faults = statefulset_faults(sts, since, now, self.settings)
        faults += failed_create_event_faults(event, statefulset_missing_pods(sts), ref, ref, now)
        self.detector.observe(ref, faults, now)

    def _on_daemon_set(self, event_type: str, ds: DaemonSetView, now: datetime) -> None:
        ref = ObjectRef(kind="DaemonSet", namespace=ds.namespace, name=ds.name)
        if not self._workload_gone_or_out(event_type, ref, ds.annotations, now):
            self._evaluate_daemon_set(ds, now)

    def _evaluate_daemon_set(self, ds: DaemonSetView, now: datetime) -> None:
        ref = ObjectRef(kind="DaemonSet", namespace=ds.namespace, name=ds.name)
        since = self.onsets.track(ref, daemonset_unavailable(ds), now)
        healthy = daemonset_healthy(ds)
        current = self.revisions.newest(ref) if healthy else None
        due = [
            workload_recheck_at(since, self.settings),
            self._known_good(ref, current, now),
            self._revision_pending(healthy and current is None, now),
        ]
        self.rechecks.set(ref, _earliest(due), partial(self._evaluate_daemon_set, ds), now)
        event = self.failed_creates.note(ref, ds, daemonset_missing_pods(ds))
        faults = daemonset_faults(ds, since, now, self.settings)
        faults += failed_create_event_faults(event, daemonset_missing_pods(ds), ref, ref, now)
        self.detector.observe(ref, faults, now)

    def _on_cron_job(self, event_type: str, cron_job: CronJobView, now: datetime) -> None:
        ref = ObjectRef(kind="CronJob", namespace=cron_job.namespace, name=cron_job.name)
        if event_type == "DELETED":
            self.runs.forget(ref)
        if not self._workload_gone_or_out(event_type, ref, cron_job.annotations, now):
            self._evaluate_cron_job(ref, now)

    def _evaluate_cron_job(self, ref: ObjectRef, now: datetime) -> None:
        """One fault for all the CronJob's runs; its newest finished run, if it succeeded, is a healthy template."""
        runs = self.runs.runs(ref)
        covered = self.scope.covers(ref, {})
        latest = latest_finished(runs)
        current = None
        if covered and latest is not None and latest.outcome is RunOutcome.SUCCEEDED and latest.template_hash:
            current = Revision(
                ObjectRef(kind="Job", namespace=ref.namespace, name=latest.job), None, latest.template_hash
            )
        self.rechecks.set(ref, self._known_good(ref, current, now), partial(self._evaluate_cron_job, ref), now)
        self.detector.observe(ref, cron_job_faults(ref, runs, now) if covered else [], now)

    def _on_job(self, event_type: str, job: JobView, now: datetime) -> None:
        ref = ObjectRef(kind="Job", namespace=job.namespace, name=job.name)
        workload = workload_of_job(job)
        if event_type == "DELETED":
            self.owners.forget(job.namespace, job.name, kind="Job")
            self.failed_creates.forget(ref)
        else:
            self.owners.observe(job)
        if workload.kind == "CronJob":  # a run: judged with the CronJob's other runs
            if event_type == "DELETED":
                self.runs.job_deleted(workload, job.name)
                self.detector.forget(ref, now)
            else:
                self.runs.record(workload, job)
                self._evaluate_job(job, now)
            self._evaluate_cron_job(workload, now)
        elif not self._workload_gone_or_out(event_type, ref, job.annotations, now):
            self._evaluate_job(job, now)

    def _evaluate_job(self, job: JobView, now: datetime) -> None:
        ref, workload = ObjectRef(kind="Job", namespace=job.namespace, name=job.name), workload_of_job(job)
        missing = job_missing_pods(job)
        faults = failed_create_event_faults(self.failed_creates.note(ref, job, missing), missing, ref, workload, now)
        if workload.kind == "Job":  # a CronJob's failed runs are judged on the CronJob
            faults += job_faults(job, now)
        self.detector.observe(ref, faults if self.scope.covers(workload, job.annotations) else [], now)

    def _on_unhealthy_event(self, event_type: str, event: EventView, now: datetime) -> None:
        """A probe failed: kept as evidence for the pod's next judgement (its restart or its recheck)."""
        if event_type != "DELETED":
            self.probe_events.record(event)

    def _on_failed_create_event(self, event_type: str, event: EventView, now: datetime) -> None:
        """A FailedCreate Event: judge its workload again if that one is short of pods (else its status will)."""
        if event_type != "DELETED":  # Events expire; the workload's own status says when it recovered
            view = self.failed_creates.record(event)
            if view is not None:
                self._evaluate_short(view, now)

    def _evaluate_short(self, view: StatefulSetView | DaemonSetView | JobView, now: datetime) -> None:
        if isinstance(view, StatefulSetView):
            self._evaluate_stateful_set(view, now)
        elif isinstance(view, DaemonSetView):
            self._evaluate_daemon_set(view, now)
        else:
            self._evaluate_job(view, now)

    def _known_good(self, workload: ObjectRef, current: Revision | None, now: datetime) -> datetime | None:
        """Tell `known_good` what is healthy now; return when to look again for it."""
        if self.known_good is None:
            return None
        return self.known_good.observe(workload, current, self.detector.last_fault_at(workload, now), now)

    def _revision_pending(self, pending: bool, now: datetime) -> datetime | None:
        """Healthy, but its ReplicaSet or ControllerRevision is not indexed yet (another stream): look again soon."""
        return now + REVISION_RETRY if pending and self.known_good is not None else None

    def _workload_gone_or_out(
        self, event_type: str, ref: ObjectRef, annotations: dict[str, str], now: datetime
    ) -> bool:
        """Deleted or opted out: drop its faults (its pods' too, for an opt-out) and stop here."""
        if event_type == "DELETED":
            self.scope.forget_workload(ref)
            self.rechecks.cancel(ref)
            self.onsets.forget(ref)
            self.failed_creates.forget(ref)
            if self.known_good is not None:
                self.known_good.forget(ref)
            self.detector.forget(ref, now)
            return True
        if self.scope.note_workload(ref, annotations):
            self.rechecks.cancel(ref)
            self.onsets.forget(ref)
            self.detector.forget_workload(ref, now)
            return True
        return False

    # ---- ticker ----------------------------------------------------------------------------------
    def _deliver_healthy(self) -> None:
        """Hand known-good signals to `on_healthy` one by one; a slow consumer (API writes) never stalls a watch."""
        assert self._on_healthy is not None
        while not self._stop.is_set():
            try:
                signal = self._healthy.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._on_healthy(signal)
            except Exception:  # keep delivering: other workloads' signals still count
                log.exception("on_healthy failed for %s", signal.workload)

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


def _earliest(times: list[datetime | None]) -> datetime | None:
    return min((t for t in times if t is not None), default=None)


def _summary(error: BaseException) -> str:
    """One short line for a stream's last error (the readiness reason): the HTTP status, else the error's type."""
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"[:ERROR_SUMMARY_CHARS]
