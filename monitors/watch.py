"""The watch loop: list, then watch, every workload kind and its pods, and feed the detector.

Streams: ReplicaSets, Deployments, StatefulSets, DaemonSets, CronJobs, Jobs and
Pods; FailedCreate Events (the only place a StatefulSet, DaemonSet or Job says it
cannot create pods) and Unhealthy Events (why a probe failed); plus
ControllerRevisions when someone listens for known-good revisions.
The pod stream lists only after the others (or after a timeout), so its first
pods are judged against filled owner indexes and opt-outs. A stream the role may
not list (403) counts as synced, is retried slowly, and says once what is not
detected without it.

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
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from tenacity import Retrying, retry_if_exception, wait_exponential

from core.clock import Clock, utc_now
from core.config import Settings
from core.models import ObjectRef
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
from monitors.trim import (
    ControllerRevisionView,
    CronJobView,
    DaemonSetView,
    DeploymentView,
    EventView,
    JobView,
    PodView,
    ReplicaSetView,
    StatefulSetView,
)

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 500
CONNECT_TIMEOUT_SECONDS = 5.0
LIST_READ_TIMEOUT_SECONDS = 60.0
OWNERS_SYNC_TIMEOUT_SECONDS = 30.0  # the pod stream's first list waits this long for the owner streams
FORBIDDEN_RETRY_SECONDS = 300.0
REVISION_RETRY = timedelta(seconds=5)
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job")
_SELECTORS = {"FailedCreateEvent": f"reason={FAILED_CREATE}", "UnhealthyEvent": f"reason={UNHEALTHY}"}
_UNDETECTED = {  # what goes unseen without a stream, for the one warning a forbidden stream gives
    "FailedCreateEvent": "FailedCreate of StatefulSets, DaemonSets and Jobs is",
    "UnhealthyEvent": "the probe messages of liveness and readiness faults are",
    "ControllerRevision": "the known-good revision of a DaemonSet is",
}

ApiObject = dict[str, Any]


@dataclass
class _Stream:
    """One list+watch: a kind, in one namespace or in all of them."""

    kind: str
    list_fn: Callable[..., Any]
    namespace: str | None = None
    field_selector: str | None = None
    synced: threading.Event = field(default_factory=threading.Event)
    forbidden: bool = False

    @property
    def args(self) -> dict[str, Any]:
        args: dict[str, Any] = {} if self.namespace is None else {"namespace": self.namespace}
        return args if self.field_selector is None else args | {"field_selector": self.field_selector}

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
        self._on_healthy = on_healthy
        self._healthy: queue.Queue[HealthyRevision] = queue.Queue()  # delivered off the watch and tick threads
        self.known_good = KnownGood(self._healthy.put, stable_window_seconds) if on_healthy is not None else None
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
            "ControllerRevision": self._on_controller_revision,
            "Deployment": self._on_deployment,
            "StatefulSet": self._on_stateful_set,
            "DaemonSet": self._on_daemon_set,
            "CronJob": self._on_cron_job,
            "Job": self._on_job,
            "Pod": self._on_pod,
            "FailedCreateEvent": self._on_failed_create_event,
            "UnhealthyEvent": self._on_unhealthy_event,
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
        elif stream.kind == "Pod":
            self._wait_for_owner_streams()
        try:
            version = self._list(stream)
        except ApiException as error:
            if error.status != 403:
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
            self._sleep(FORBIDDEN_RETRY_SECONDS)
            return
        stream.forbidden = False
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

    def _wait_for_owner_streams(self) -> None:
        deadline = time.monotonic() + OWNERS_SYNC_TIMEOUT_SECONDS
        for other in self._streams:
            while other.kind != "Pod" and not other.synced.wait(0.2):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return

    def _list(self, stream: _Stream) -> str:
        items: list[ApiObject] = []
        token: str | None = None
        while True:
            response = stream.list_fn(
                **stream.args,
                limit=LIST_PAGE_SIZE,
                _continue=token,
                _preload_content=False,
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
                    stream.list_fn,
                    **stream.args,
                    resource_version=version,
                    allow_watch_bookmarks=True,
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
        kind, namespace = stream.kind, stream.namespace
        present = {_ref(kind, o) for o in in_scope}

        def kept(ref: ObjectRef) -> bool:
            return ref.kind != kind or ref in present or namespace not in (None, ref.namespace)

        if kind == "ReplicaSet":
            replica_sets = [ReplicaSetView.from_api(o) for o in in_scope]
            self.owners.replace(namespace, replica_sets)
            self.revisions.replace(kind, namespace, replica_sets)
        elif kind == "ControllerRevision":
            self.revisions.replace(kind, namespace, (ControllerRevisionView.from_api(o) for o in in_scope))
            return
        elif kind == "FailedCreateEvent":
            for view in self.failed_creates.replace_events(namespace, (EventView.from_api(o) for o in in_scope)):
                self._evaluate_short(view, now)
            return
        elif kind == "UnhealthyEvent":
            self.probe_events.replace(namespace, (EventView.from_api(o) for o in in_scope))
            return
        elif kind == "Job":
            self.owners.replace(namespace, (JobView.from_api(o) for o in in_scope), kind="Job")
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
        if kind in WORKLOAD_KINDS:  # before any pod is judged against it
            opted = [
                _ref(kind, o) for o in in_scope if opted_out(o["metadata"].get("annotations") or {}, self.settings)
            ]
            self.scope.replace_workloads(kind, namespace, opted)
        for obj in in_scope:
            self._dispatch(kind, "ADDED", obj, now)

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
        replica_set = ReplicaSetView.from_api(obj, self._keep)
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

    def _on_controller_revision(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        revision = ControllerRevisionView.from_api(obj)
        if event_type == "DELETED":
            self.revisions.forget(revision)
        else:
            self.revisions.observe(revision)

    def _on_pod(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        pod = PodView.from_api(obj, self._keep)
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

    def _on_deployment(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        deployment = DeploymentView.from_api(obj, self._keep)
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

    def _on_stateful_set(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        sts = StatefulSetView.from_api(obj, self._keep)
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

    def _on_daemon_set(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        ds = DaemonSetView.from_api(obj, self._keep)
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

    def _on_cron_job(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        cron_job = CronJobView.from_api(obj, self._keep)
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

    def _on_job(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        job = JobView.from_api(obj, self._keep)
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

    def _on_unhealthy_event(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        """A probe failed: kept as evidence for the pod's next judgement (its restart or its recheck)."""
        if event_type != "DELETED":
            self.probe_events.record(EventView.from_api(obj))

    def _on_failed_create_event(self, event_type: str, obj: ApiObject, now: datetime) -> None:
        """A FailedCreate Event: judge its workload again if that one is short of pods (else its status will)."""
        if event_type != "DELETED":  # Events expire; the workload's own status says when it recovered
            view = self.failed_creates.record(EventView.from_api(obj))
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


def _ref(kind: str, obj: ApiObject) -> ObjectRef:
    return ObjectRef(kind=kind, namespace=obj["metadata"]["namespace"], name=obj["metadata"]["name"])
