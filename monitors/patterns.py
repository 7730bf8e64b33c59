"""Failure patterns: pure functions from one trimmed object to the typed faults it shows.

Level-based: each call looks only at the object's current status and `now`, so a
replayed or duplicated event gives the same answer. Patterns that need time to
pass (grace periods) say when to look again (`*_recheck_at`), because no watch
event arrives when nothing changes.

Containers, first match wins: image pull, config error, OOM, then a restart loop,
which is a liveness failure when the container has a liveness probe and the last
run ended the way a probe kill ends (SIGKILL 137, SIGTERM 143, or a clean exit it
did not choose) or the kubelet's Unhealthy Event says the liveness probe failed,
else a crash loop (a crash from bad args, exit 1 or 2, never probed, stays
CRASH_LOOP). Probe messages, when known, lead the evidence. An init container that fails while the pod is still initialising is
INIT_CONTAINER whatever the reason (pull, crash, OOM, exit non-zero): the fix is in
that init container, and the evidence keeps the kubelet's reason. A sidecar
(restartPolicy Always) or an init container failing after the pod initialised is
judged like an app container. A pod with every container running but not all
ready past the unavailability grace (or longer, if its readiness probe's initial
delay + period x failureThreshold is longer) is NOT_READY (readiness never reached).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core import k8s
from core.config import Settings
from core.models import Evidence, Fault, FaultKind, ObjectRef
from monitors.probe_events import ProbeMessages
from monitors.trim import (
    ContainerView,
    DaemonSetView,
    DeploymentView,
    EventView,
    JobView,
    ObjectView,
    PodView,
    StatefulSetView,
)

INIT_WAITING_REASONS = k8s.IMAGE_PULL_REASONS | k8s.CREATE_CONTAINER_REASONS | {k8s.CRASH_LOOP_REASON}
PROBE_KILL_EXIT_CODES = frozenset({0, 137, 143})  # exited on the kubelet's SIGTERM, or SIGKILLed after the grace
# The kubelet forgets a crash (resets its back-off) after a container has run 10 minutes.
CRASH_MEMORY = timedelta(minutes=10)


def pod_faults(
    pod: PodView, workload: ObjectRef, now: datetime, settings: Settings, probes: ProbeMessages | None = None
) -> list[Fault]:
    """Faults of one pod; `workload` is what a fix would change (see `owners`); `probes`: its probe failures."""
    probes = probes or {}
    if pod.deleted is not None:  # terminating pods are being replaced; what they show no longer matters
        return []
    subject = ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name)
    found: list[tuple[FaultKind, Evidence]] = []
    since = _unschedulable_since(pod)
    scheduled = pod.condition("PodScheduled")
    if since is not None and scheduled is not None and now - since >= _seconds(settings.pending_grace_seconds):
        found.append(
            (FaultKind.UNSCHEDULABLE, Evidence(reason=scheduled.reason, message=scheduled.message, since=since))
        )
    for container in pod.containers:
        fault = _container_fault(pod, container, now, probes)
        if fault is not None:
            found.append(fault)
    not_ready = _readiness_pending_since(pod)
    if not found and not_ready is not None and now - not_ready >= _readiness_grace(pod, settings):
        found.append((FaultKind.NOT_READY, _not_ready_evidence(pod, not_ready, now, probes)))
    return [Fault(kind=kind, workload=workload, subject=subject, evidence=e, observed_at=now) for kind, e in found]


def pod_recheck_at(pod: PodView, settings: Settings) -> datetime | None:
    """When an unschedulable or running-but-unready pod's grace period ends, if it has one."""
    unschedulable, not_ready = _unschedulable_since(pod), _readiness_pending_since(pod)
    due = [
        *([unschedulable + _seconds(settings.pending_grace_seconds)] if unschedulable is not None else []),
        *([not_ready + _readiness_grace(pod, settings)] if not_ready is not None else []),
    ]
    return min(due, default=None)


def deployment_faults(deployment: DeploymentView, now: datetime, settings: Settings) -> list[Fault]:
    """A stuck rollout, and too few available replicas for longer than the grace period."""
    ref = ObjectRef(kind="Deployment", namespace=deployment.namespace, name=deployment.name)
    found: list[tuple[FaultKind, Evidence]] = []
    progressing = deployment.condition("Progressing")
    if (
        progressing is not None
        and progressing.status == "False"
        and progressing.reason == "ProgressDeadlineExceeded"
        and deployment.observed_generation >= deployment.generation  # else a new spec is already rolling out
    ):
        evidence = Evidence(reason=progressing.reason, message=progressing.message, since=progressing.last_transition)
        found.append((FaultKind.ROLLOUT_STUCK, evidence))
    since = _unavailable_since(deployment)
    available = deployment.condition("Available")
    if since is not None and available is not None and now - since >= _seconds(settings.unavailable_grace_seconds):
        counts = f"{deployment.available_replicas}/{deployment.replicas} available"
        message = f"{available.message} ({counts})" if available.message else counts
        evidence = Evidence(reason=available.reason or "MinimumReplicasUnavailable", message=message, since=since)
        found.append((FaultKind.REPLICAS_UNAVAILABLE, evidence))
    return [Fault(kind=kind, workload=ref, subject=ref, evidence=e, observed_at=now) for kind, e in found]


def deployment_recheck_at(deployment: DeploymentView, settings: Settings) -> datetime | None:
    """When a Deployment's unavailability grace period ends, if it has one."""
    since = _unavailable_since(deployment)
    return None if since is None else since + _seconds(settings.unavailable_grace_seconds)


def failed_create_faults(view: ObjectView, subject: ObjectRef, workload: ObjectRef, now: datetime) -> list[Fault]:
    """The controller cannot create pods (ResourceQuota, LimitRange, an admission webhook): its message verbatim."""
    failure = view.condition("ReplicaFailure")
    if failure is None or failure.status != "True":
        return []
    evidence = Evidence(reason=failure.reason or "FailedCreate", message=failure.message, since=failure.last_transition)
    return [Fault(kind=FaultKind.FAILED_CREATE, workload=workload, subject=subject, evidence=evidence, observed_at=now)]


def failed_create_event_faults(
    event: EventView | None, missing_pods: bool, subject: ObjectRef, workload: ObjectRef, now: datetime
) -> list[Fault]:
    """A StatefulSet, DaemonSet or Job short of pods, with a FailedCreate Event saying why: its message verbatim."""
    if event is None or not missing_pods:
        return []
    evidence = Evidence(reason=event.reason, message=event.message, since=event.last_seen)
    return [Fault(kind=FaultKind.FAILED_CREATE, workload=workload, subject=subject, evidence=evidence, observed_at=now)]


def statefulset_missing_pods(sts: StatefulSetView) -> bool:
    return sts.created_replicas < sts.replicas


def daemonset_missing_pods(ds: DaemonSetView) -> bool:
    return ds.scheduled < ds.desired


def job_missing_pods(job: JobView) -> bool:
    """A running Job with fewer active pods than it wants (parallelism, capped by the completions left)."""
    if job.succeeded or job.has_failed:
        return False
    wanted = job.parallelism if job.completions is None else min(job.parallelism, job.completions - job.succeeded_pods)
    return job.active < wanted


def statefulset_unavailable(sts: StatefulSetView) -> bool:
    return sts.replicas > 0 and sts.available_replicas < sts.replicas


def statefulset_faults(
    sts: StatefulSetView, unavailable_since: datetime | None, now: datetime, settings: Settings
) -> list[Fault]:
    """Pods unavailable past the grace: a stuck rollout while one is under way, else too few replicas.

    A StatefulSet has no Available condition, so the caller tracks since when it
    is unavailable (see `onsets`).
    """
    if not statefulset_unavailable(sts) or not _past(unavailable_since, now, settings.unavailable_grace_seconds):
        return []
    target = max(0, sts.replicas - sts.partition)
    rolling = sts.observed_generation < sts.generation or (
        not sts.on_delete
        and (sts.updated_replicas < target or (sts.partition == 0 and sts.current_revision != sts.update_revision))
    )
    counts = (
        f"{sts.available_replicas}/{sts.replicas} available, {sts.updated_replicas}/{sts.replicas} updated to "
        f"revision {sts.update_revision or '?'} (current {sts.current_revision or '?'})"
    )
    return _workload_fault("StatefulSet", sts, rolling, counts, unavailable_since, now)


def daemonset_unavailable(ds: DaemonSetView) -> bool:
    return ds.desired > 0 and (ds.unavailable > 0 or ds.available < ds.desired)


def daemonset_faults(
    ds: DaemonSetView, unavailable_since: datetime | None, now: datetime, settings: Settings
) -> list[Fault]:
    """Like `statefulset_faults`: a rollout is under way while fewer than all scheduled pods are updated."""
    if not daemonset_unavailable(ds) or not _past(unavailable_since, now, settings.unavailable_grace_seconds):
        return []
    rolling = ds.observed_generation < ds.generation or (not ds.on_delete and ds.updated < ds.desired)
    counts = f"{ds.available}/{ds.desired} available, {ds.updated}/{ds.desired} updated"
    return _workload_fault("DaemonSet", ds, rolling, counts, unavailable_since, now)


def workload_recheck_at(unavailable_since: datetime | None, settings: Settings) -> datetime | None:
    """When a StatefulSet's or DaemonSet's unavailability grace ends."""
    return None if unavailable_since is None else unavailable_since + _seconds(settings.unavailable_grace_seconds)


def _workload_fault(
    kind: str, view: ObjectView, rolling: bool, counts: str, since: datetime | None, now: datetime
) -> list[Fault]:
    ref = ObjectRef(kind=kind, namespace=view.namespace, name=view.name)
    if rolling:
        fault_kind, evidence = FaultKind.ROLLOUT_STUCK, Evidence(reason="RolloutStuck", message=counts, since=since)
    else:
        fault_kind = FaultKind.REPLICAS_UNAVAILABLE
        evidence = Evidence(reason="MinimumReplicasUnavailable", message=counts, since=since)
    return [Fault(kind=fault_kind, workload=ref, subject=ref, evidence=evidence, observed_at=now)]


def job_faults(job: JobView, now: datetime) -> list[Fault]:
    """A Job the controller gave up on (BackoffLimitExceeded, DeadlineExceeded, ...)."""
    failed = job.condition("Failed")
    if failed is None or failed.status != "True":
        return []
    ref = ObjectRef(kind="Job", namespace=job.namespace, name=job.name)
    counts = f"{job.failed} failed pod(s)"
    message = f"{failed.message} ({counts})" if failed.message else counts
    evidence = Evidence(reason=failed.reason or "Failed", message=message, since=failed.last_transition)
    return [Fault(kind=FaultKind.JOB_FAILED, workload=ref, subject=ref, evidence=evidence, observed_at=now)]


def _container_fault(
    pod: PodView, c: ContainerView, now: datetime, probes: ProbeMessages
) -> tuple[FaultKind, Evidence] | None:
    """First match wins; an OOM kill outranks the crash loop it causes."""
    if c.init and not c.restartable and _initializing(pod):
        return _init_container_fault(pod, c, now)
    if c.waiting_reason in k8s.IMAGE_PULL_REASONS:
        return FaultKind.IMAGE_PULL, _evidence(c, c.waiting_reason, c.waiting_message, None, _unready_since(pod))
    if c.waiting_reason in k8s.CREATE_CONTAINER_REASONS:
        return FaultKind.CONTAINER_CONFIG, _evidence(c, c.waiting_reason, c.waiting_message, None, _unready_since(pod))
    if c.terminated is not None and c.terminated.reason == k8s.OOM_KILLED_REASON:
        return FaultKind.OOM_KILLED, _evidence(
            c, k8s.OOM_KILLED_REASON, "", c.terminated.exit_code, c.terminated.finished_at
        )
    last = c.last_terminated
    if c.waiting_reason != k8s.CRASH_LOOP_REASON and not _restarting(c, now):
        return None
    if last is None:
        return FaultKind.CRASH_LOOP, _evidence(c, k8s.CRASH_LOOP_REASON, c.waiting_message, None, _unready_since(pod))
    if last.reason == k8s.OOM_KILLED_REASON:
        return FaultKind.OOM_KILLED, _evidence(
            c, k8s.OOM_KILLED_REASON, c.waiting_message, last.exit_code, last.finished_at
        )
    probe_failure = probes.get((c.name, "Liveness"))
    if c.liveness_probe and (last.exit_code in PROBE_KILL_EXIT_CODES or probe_failure is not None):
        restarts = f"restarted {c.restart_count} time(s) by its liveness probe (last exit {last.exit_code})"
        message = "; ".join(m for m in (probe_failure, restarts, c.waiting_message) if m)
        return FaultKind.LIVENESS_FAILED, _evidence(c, "LivenessProbeFailed", message, last.exit_code, last.finished_at)
    reason = c.waiting_reason or last.reason or k8s.ERROR_REASON
    return FaultKind.CRASH_LOOP, _evidence(c, reason, c.waiting_message, last.exit_code, last.finished_at)


def _init_container_fault(pod: PodView, c: ContainerView, now: datetime) -> tuple[FaultKind, Evidence] | None:
    """An init container that cannot pull, cannot be created, crashes or exits non-zero blocks the whole pod."""
    last = c.last_terminated
    if c.waiting_reason in INIT_WAITING_REASONS:
        code = last.exit_code if last is not None and c.waiting_reason == k8s.CRASH_LOOP_REASON else None
        since = last.finished_at if code is not None and last is not None else pod.created
        return FaultKind.INIT_CONTAINER, _evidence(c, c.waiting_reason or "", c.waiting_message, code, since)
    current = c.terminated
    if current is not None and (current.exit_code != 0 or current.reason == k8s.OOM_KILLED_REASON):
        return FaultKind.INIT_CONTAINER, _evidence(
            c, current.reason or k8s.ERROR_REASON, "", current.exit_code, current.finished_at
        )
    if last is not None and _restarting(c, now):
        return FaultKind.INIT_CONTAINER, _evidence(
            c, last.reason or k8s.ERROR_REASON, "", last.exit_code, last.finished_at
        )
    return None


def _initializing(pod: PodView) -> bool:
    """Init containers still stand between the pod and its app containers."""
    return not pod.initialized or all(c.waiting_reason == "PodInitializing" for c in pod.app_containers)


def _restarting(c: ContainerView, now: datetime) -> bool:
    """Between two crashes a container runs, not yet ready, for a while: still the same crash loop."""
    last = c.last_terminated
    if last is None or not c.running or c.ready:
        return False
    crashed = last.reason == k8s.OOM_KILLED_REASON or last.exit_code != 0 or c.liveness_probe  # a probe kill may exit 0
    return crashed and (last.finished_at is None or now - last.finished_at < CRASH_MEMORY)


def _readiness_pending_since(pod: PodView) -> datetime | None:
    """Readiness never reached: Running, every app container running, one not ready; since when."""
    apps = pod.app_containers
    if pod.deleted is not None or pod.phase != "Running" or not apps or not all(c.running for c in apps):
        return None
    if all(c.ready for c in apps):
        return None
    ready = pod.condition("ContainersReady")
    since = ready.last_transition if ready is not None and ready.status == "False" else None
    started = [c.started_at for c in apps if not c.ready and c.started_at is not None]
    candidates = [t for t in (since or pod.created, *started) if t is not None]
    return max(candidates, default=None)


def _readiness_grace(pod: PodView, settings: Settings) -> timedelta:
    """The unavailability grace, or longer when a readiness probe is allowed to take longer to pass."""
    probes = [c.readiness_delay_seconds for c in pod.app_containers if not c.ready]
    return _seconds(max([settings.unavailable_grace_seconds, *probes]))


def _not_ready_evidence(pod: PodView, since: datetime, now: datetime, probes: ProbeMessages) -> Evidence:
    unready = [c for c in pod.app_containers if not c.ready]
    ready = pod.condition("ContainersReady")
    seconds = int((now - since).total_seconds())
    probe = "its readiness probe has not passed" if unready[0].readiness_probe else "it has not become ready"
    message = f"running for {seconds} s but {probe}"
    if ready is not None and ready.message:
        message = f"{message} ({ready.message})"
    failure = probes.get((unready[0].name, "Readiness"))
    if failure is not None:
        message = f"{failure}; {message}"
    return Evidence(
        reason="NotReady",
        message=message,
        container=unready[0].name,
        restart_count=unready[0].restart_count,
        since=since,
    )


def _evidence(c: ContainerView, reason: str, message: str, exit_code: int | None, since: datetime | None) -> Evidence:
    return Evidence(
        reason=reason,
        message=message,
        container=c.name,
        exit_code=exit_code,
        restart_count=c.restart_count,
        since=since,
    )


def _unschedulable_since(pod: PodView) -> datetime | None:
    scheduled = pod.condition("PodScheduled")
    if pod.phase != "Pending" or scheduled is None or scheduled.status != "False":
        return None
    if scheduled.reason != k8s.UNSCHEDULABLE_REASON:
        return None
    return scheduled.last_transition or pod.created


def _unavailable_since(deployment: DeploymentView) -> datetime | None:
    available = deployment.condition("Available")
    if available is None or available.status != "False" or deployment.replicas == 0:
        return None
    return available.last_transition


def _unready_since(pod: PodView) -> datetime | None:
    """When the containers stopped being ready: the nearest status-change time a waiting state has."""
    ready = pod.condition("ContainersReady")
    if ready is not None and ready.status == "False" and ready.last_transition is not None:
        return ready.last_transition
    return pod.created


def _past(since: datetime | None, now: datetime, grace_seconds: float) -> bool:
    return since is not None and now - since >= _seconds(grace_seconds)


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
