"""One look at a workload after a change: healthy, progressing, failing or broken, and why. Pure.

Strict on purpose (a wrong "fixed" is worse than an escalation). Healthy needs the rollout complete
and every current pod Ready (or the Job succeeded, or a CronJob's run from the current template
succeeded), no fault signal on any current pod (image pull, config error, crash, OOM kill, restart,
unschedulable), and the guarantees kept: the workload still exists, is not scaled to 0 nor below its
replicas before the fix, and no container, probe or limit was removed. A broken guarantee is
`BROKEN` (no waiting helps); a fault signal is `FAILING`. A CronJob with no run yet from the current
template is progressing with `WAITING_FOR_RUN`: AMOS does not start a Job itself (a run out of
schedule can have side effects).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from core import k8s
from core.clock import parse_time
from core.models import ObjectRef
from orchestrator.rollout import current_pods, rollout_complete, runs_to_judge
from tools import objects

FAULT_WAITING = (
    k8s.IMAGE_PULL_REASONS | k8s.CREATE_CONTAINER_REASONS | k8s.START_FAILURE_REASONS | {k8s.CRASH_LOOP_REASON}
)
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
WAITING_FOR_RUN = "waiting for the next run"


class Baseline(BaseModel):
    """What must still hold after a fix, read from the snapshot taken before it."""

    workload: ObjectRef
    replicas: int | None = None
    probes: dict[str, list[str]] = Field(default_factory=dict)  # container -> probe fields present
    limits: dict[str, list[str]] = Field(default_factory=dict)  # container -> resource limits present

    @classmethod
    def of(cls, ref: ObjectRef, obj: dict[str, Any]) -> Baseline:
        replicas = (obj.get("spec") or {}).get("replicas") if ref.kind in k8s.SCALABLE_KINDS else None
        probes: dict[str, list[str]] = {}
        limits: dict[str, list[str]] = {}
        for _, container in objects.containers(obj):
            name = str(container.get("name"))
            probes[name] = [probe for probe in PROBES if container.get(probe)]
            limits[name] = sorted(((container.get("resources") or {}).get("limits") or {}).keys())
        return cls(workload=ref, replicas=None if replicas is None else int(replicas), probes=probes, limits=limits)


class Health(StrEnum):
    HEALTHY = "healthy"
    PROGRESSING = "progressing"
    FAILING = "failing"  # a fault signal on a current pod
    BROKEN = "broken"  # a guarantee is broken: no waiting helps


class Assessment(BaseModel):
    health: Health
    reasons: list[str] = Field(default_factory=list)
    summary: str = ""


def broken_guarantees(baseline: Baseline, obj: dict[str, Any] | None) -> list[str]:
    if obj is None:
        return [f"{baseline.workload.kind}/{baseline.workload.name} no longer exists"]
    problems = []
    kind = baseline.workload.kind
    if kind in k8s.SCALABLE_KINDS:
        replicas = int((obj.get("spec") or {}).get("replicas", 1))
        if replicas == 0:
            problems.append(f"the {kind} was scaled to 0")
        elif baseline.replicas is not None and replicas < baseline.replicas:
            problems.append(f"the {kind} was scaled down from {baseline.replicas} to {replicas} replicas")
    current = {str(c.get("name")): c for _, c in objects.containers(obj)}
    for name, probes in baseline.probes.items():
        container = current.get(name)
        if container is None:
            problems.append(f"container {name} was removed")
            continue
        problems += [f"the {probe} of container {name} was removed" for probe in probes if not container.get(probe)]
        present = ((container.get("resources") or {}).get("limits") or {}).keys()
        problems += [
            f"the {resource} limit of container {name} was removed"
            for resource in baseline.limits.get(name, [])
            if resource not in present
        ]
    return problems


def pod_signals(pod: dict[str, Any], since: datetime, restarts: dict[str, int]) -> list[str]:
    """Fault signals on one pod; `restarts` holds the restart counts first seen during this verification."""
    name = objects.meta(pod).get("name")
    uid = objects.meta(pod).get("uid", name)
    status = pod.get("status") or {}
    found = []
    for item in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        container = item.get("name")
        state, last = item.get("state") or {}, item.get("lastState") or {}
        waiting = (state.get("waiting") or {}).get("reason")
        if waiting in FAULT_WAITING:
            message = (state.get("waiting") or {}).get("message") or ""
            found.append(f"pod {name} container {container}: {waiting}" + (f" ({message[:160]})" if message else ""))
        terminated = state.get("terminated") or {}
        if terminated and int(terminated.get("exitCode") or 0) != 0:
            found.append(
                f"pod {name} container {container} exited with {terminated.get('exitCode')} "
                f"({terminated.get('reason')})"
            )
        previous = last.get("terminated") or {}
        finished = parse_time(previous.get("finishedAt"))
        if previous and finished is not None and finished >= since and int(previous.get("exitCode") or 0) != 0:
            found.append(
                f"pod {name} container {container} was {previous.get('reason')} "
                f"(exit {previous.get('exitCode')}) during verification"
            )
        key = f"{uid}/{container}"
        count = int(item.get("restartCount") or 0)
        first = restarts.setdefault(key, count)
        if count > first:
            found.append(f"pod {name} container {container} restarted {count - first} time(s) during verification")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == k8s.UNSCHEDULABLE_REASON:
            found.append(f"pod {name} cannot be scheduled: {condition.get('message', '')[:160]}")
    if status.get("phase") == "Failed" and pod.get("spec", {}).get("restartPolicy") == "Always":
        found.append(f"pod {name} failed")
    return list(dict.fromkeys(found))


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The condition `kind` when it is True."""
    return next(
        (
            c
            for c in (obj.get("status") or {}).get("conditions") or []
            if c.get("type") == kind and c.get("status") == "True"
        ),
        None,
    )


def _assess_cronjob(cronjob: dict[str, Any], runs: list[dict[str, Any]], signals: list[str]) -> Assessment:
    for job in runs:
        failed = _condition(job, "Failed")
        if failed is not None:
            return Assessment(
                health=Health.BROKEN,
                reasons=[
                    (
                        f"the run {objects.meta(job).get('name')} failed: {failed.get('reason')}: "
                        f"{str(failed.get('message', ''))[:200]}"
                    )
                ],
            )
        if _condition(job, "Complete") is not None:
            return Assessment(
                health=Health.HEALTHY,
                summary=f"the run {objects.meta(job).get('name')} from the current job template succeeded",
            )
    if signals:
        return Assessment(health=Health.FAILING, reasons=signals, summary="the run is failing")
    spec = cronjob.get("spec") or {}
    if runs:
        return Assessment(
            health=Health.PROGRESSING, reasons=[f"the run {objects.meta(runs[-1]).get('name')} is running"]
        )
    why = "the CronJob is suspended" if spec.get("suspend") else f"schedule {spec.get('schedule')!r}"
    return Assessment(health=Health.PROGRESSING, reasons=[f"{WAITING_FOR_RUN} ({why})"])


def _missed_deadline(deployment: dict[str, Any], since: datetime) -> str | None:
    """The Deployment's own verdict on the rollout since `since`: its progress deadline passed."""
    conditions = (deployment.get("status") or {}).get("conditions") or []
    progressing = next((c for c in conditions if c.get("type") == "Progressing"), None)
    if progressing is None or progressing.get("reason") != "ProgressDeadlineExceeded":
        return None
    updated = parse_time(progressing.get("lastUpdateTime"))
    if updated is None or updated < since:
        return None
    return f"the rollout exceeded its progress deadline: {progressing.get('message', '')[:160]}"


def assess(
    baseline: Baseline,
    obj: dict[str, Any] | None,
    history: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    since: datetime,
    restarts: dict[str, int],
) -> Assessment:
    """One look at the workload: healthy, progressing, failing or broken, with the reasons.

    `history`: the workload's ReplicaSets or ControllerRevisions; for a CronJob, its Jobs.
    """
    broken = broken_guarantees(baseline, obj)
    if broken or obj is None:
        return Assessment(health=Health.BROKEN, reasons=broken, summary="a guarantee is broken")
    kind = obj.get("kind")
    status = obj.get("status") or {}
    if kind == "CronJob":
        runs = runs_to_judge(obj, history, since)
        live = [pod for pod in pods if any(objects.owned_by(pod, job) for job in runs)]
        signals = [signal for pod in live for signal in pod_signals(pod, since, restarts)]
        return _assess_cronjob(obj, runs, signals)
    if kind == "Job":
        failed = _condition(obj, "Failed")
        if failed is not None:
            return Assessment(
                health=Health.BROKEN,
                reasons=[f"the Job failed: {failed.get('reason')}: {failed.get('message', '')[:200]}"],
            )
        wanted = int((obj.get("spec") or {}).get("completions") or 1)
        if int(status.get("succeeded") or 0) >= wanted:
            return Assessment(health=Health.HEALTHY, summary=f"the Job succeeded ({status.get('succeeded')} pods)")
    current = current_pods(obj, history, pods)
    if current is None:
        return Assessment(health=Health.PROGRESSING, reasons=["the controller has not caught up with the new spec"])
    signals = [signal for pod in current for signal in pod_signals(pod, since, restarts)]
    deadline = _missed_deadline(obj, since) if kind == "Deployment" else None
    if deadline is not None:
        signals.append(deadline)
    if signals:
        return Assessment(health=Health.FAILING, reasons=signals, summary="the fault is still there")
    if kind in k8s.ROLLOUT_KINDS:
        complete, summary = rollout_complete(obj, current)
        if complete:
            return Assessment(health=Health.HEALTHY, summary=f"rollout complete: {summary}")
        return Assessment(health=Health.PROGRESSING, reasons=[f"rollout in progress: {summary}"], summary=summary)
    if kind == "Pod":
        if objects.is_ready(obj):
            return Assessment(health=Health.HEALTHY, summary="the pod is Ready")
        return Assessment(health=Health.PROGRESSING, reasons=["the pod is not Ready yet"])
    return Assessment(health=Health.PROGRESSING, reasons=[f"the Job is running ({status.get('active', 0)} active)"])
