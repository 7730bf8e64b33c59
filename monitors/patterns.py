"""Failure patterns: pure functions from one trimmed object to the typed faults it shows.

Level-based: each call looks only at the object's current status and `now`, so a
replayed or duplicated event gives the same answer. Patterns that need time to
pass (grace periods) say when to look again (`*_recheck_at`), because no watch
event arrives when nothing changes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.config import Settings
from core.models import Evidence, Fault, FaultKind, ObjectRef
from monitors.trim import ContainerView, DeploymentView, JobView, PodView

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CREATE_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
OOM_REASON = "OOMKilled"
# The kubelet forgets a crash (resets its back-off) after a container has run 10 minutes.
CRASH_MEMORY = timedelta(minutes=10)


def pod_faults(pod: PodView, workload: ObjectRef, now: datetime, settings: Settings) -> list[Fault]:
    """Faults of one pod; `workload` is what a fix would change (see `owners`)."""
    if pod.deleted is not None:  # terminating pods are being replaced; what they show no longer matters
        return []
    subject = ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name)
    found: list[tuple[FaultKind, Evidence]] = []
    since = _unschedulable_since(pod)
    scheduled = pod.condition("PodScheduled")
    if since is not None and scheduled is not None and now - since >= _seconds(settings.pending_grace_seconds):
        found.append((FaultKind.UNSCHEDULABLE, Evidence(reason=scheduled.reason, message=scheduled.message, since=since)))
    for container in pod.containers:
        fault = _container_fault(pod, container, now)
        if fault is not None:
            found.append(fault)
    return [Fault(kind=kind, workload=workload, subject=subject, evidence=e, observed_at=now) for kind, e in found]


def pod_recheck_at(pod: PodView, settings: Settings) -> datetime | None:
    """When an unschedulable pod's grace period ends, if it has one."""
    since = _unschedulable_since(pod)
    return None if since is None else since + _seconds(settings.pending_grace_seconds)


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


def _container_fault(pod: PodView, c: ContainerView, now: datetime) -> tuple[FaultKind, Evidence] | None:
    """First match wins; an OOM kill outranks the crash loop it causes."""
    if c.waiting_reason in IMAGE_PULL_REASONS:
        return FaultKind.IMAGE_PULL, _evidence(c, c.waiting_reason, c.waiting_message, None, _not_ready_since(pod))
    if c.waiting_reason in CREATE_REASONS:
        return FaultKind.CONTAINER_CONFIG, _evidence(c, c.waiting_reason, c.waiting_message, None, _not_ready_since(pod))
    if c.terminated is not None and c.terminated.reason == OOM_REASON:
        return FaultKind.OOM_KILLED, _evidence(c, OOM_REASON, "", c.terminated.exit_code, c.terminated.finished_at)
    last = c.last_terminated
    if c.waiting_reason != "CrashLoopBackOff" and not _restarting(c, now):
        return None
    if last is None:
        return FaultKind.CRASH_LOOP, _evidence(c, "CrashLoopBackOff", c.waiting_message, None, _not_ready_since(pod))
    if last.reason == OOM_REASON:
        return FaultKind.OOM_KILLED, _evidence(c, OOM_REASON, c.waiting_message, last.exit_code, last.finished_at)
    reason = c.waiting_reason or last.reason or "Error"
    return FaultKind.CRASH_LOOP, _evidence(c, reason, c.waiting_message, last.exit_code, last.finished_at)


def _restarting(c: ContainerView, now: datetime) -> bool:
    """Between two crashes a container runs, not yet ready, for a while: still the same crash loop."""
    last = c.last_terminated
    if last is None or not c.running or c.ready:
        return False
    crashed = last.reason == OOM_REASON or last.exit_code != 0
    return crashed and (last.finished_at is None or now - last.finished_at < CRASH_MEMORY)


def _evidence(
    c: ContainerView, reason: str, message: str, exit_code: int | None, since: datetime | None
) -> Evidence:
    return Evidence(
        reason=reason, message=message, container=c.name, exit_code=exit_code, restart_count=c.restart_count,
        since=since,
    )


def _unschedulable_since(pod: PodView) -> datetime | None:
    scheduled = pod.condition("PodScheduled")
    if pod.phase != "Pending" or scheduled is None or scheduled.status != "False":
        return None
    if scheduled.reason != "Unschedulable":
        return None
    return scheduled.last_transition or pod.created


def _unavailable_since(deployment: DeploymentView) -> datetime | None:
    available = deployment.condition("Available")
    if available is None or available.status != "False" or deployment.replicas == 0:
        return None
    return available.last_transition


def _not_ready_since(pod: PodView) -> datetime | None:
    """When the containers stopped being ready: the nearest status-change time a waiting state has."""
    ready = pod.condition("ContainersReady")
    if ready is not None and ready.status == "False" and ready.last_transition is not None:
        return ready.last_transition
    return pod.created


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)
