"""The judge: did a change fix the fault without breaking a guarantee? Success, failure or inconclusive.

Strict on purpose (a wrong "fixed" is worse than an escalation). Success needs, for a whole
stable window within `verify_timeout_seconds`: the rollout complete and every current pod Ready
(or the Job succeeded), no fault signal on any current pod (image pull, config error, crash,
OOM kill, restart, unschedulable), and the guarantees kept: the workload still exists, is not
scaled to 0 nor below its replicas before the fix, and no container, probe or limit was removed.
A broken guarantee or a persisting fault signal is a failure; anything else at the deadline is
inconclusive (it escalates). `assess` is pure; `Judge` polls the cluster.

Complete means, per kind: Deployment: every replica updated, ready and available. StatefulSet:
the ordered rollout done (`updatedReplicas` covers every ordinal at or above the partition,
`currentRevision == updateRevision` when there is no partition) and `readyReplicas == replicas`;
with `OnDelete`, every pod Ready. DaemonSet: `numberReady == desiredNumberScheduled` and
`updatedNumberScheduled == desiredNumberScheduled` (with `OnDelete`: every scheduled pod Ready and
none unavailable). CronJob: AMOS does not start a Job itself (a run out of schedule can have side
effects); it waits for the next scheduled run made from the current job template: it succeeded,
or it failed; when no run comes within the deadline the verdict is `deferred` ("verified at the
next run"), which is not a failure: the change stays and the report says so.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from core import k8s
from core.clock import Clock, utc_now
from core.config import Settings
from core.models import ObjectRef
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess
from tools.snapshot import Snapshot

FAULT_WAITING = (
    k8s.IMAGE_PULL_REASONS | k8s.CREATE_CONTAINER_REASONS | k8s.START_FAILURE_REASONS | {k8s.CRASH_LOOP_REASON}
)
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
WAITING_FOR_RUN = "waiting for the next run"
MAX_DETAILS = 8


class VerdictKind(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    INCONCLUSIVE = "inconclusive"
    DEFERRED = "deferred"  # a CronJob with no run within the deadline: judged at its next run, not restored


class Verdict(BaseModel):
    kind: VerdictKind
    reason: str
    details: list[str] = Field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind is VerdictKind.SUCCESS

    def text(self) -> str:
        lines = [f"{self.kind.value} after {self.seconds:.0f}s: {self.reason}"]
        lines += [f"  - {detail}" for detail in self.details[:MAX_DETAILS]]
        return "\n".join(lines)


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


# --- pure reading ---------------------------------------------------------------------------------------


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


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


def current_pods(
    obj: dict[str, Any], history: list[dict[str, Any]], pods: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """The live pods of the workload's current template; None while the controller has not caught up.

    `history`: the ReplicaSets or ControllerRevisions of the workload; for a CronJob, the Jobs to judge.
    """
    live = [pod for pod in pods if not objects.meta(pod).get("deletionTimestamp")]
    kind = obj.get("kind")
    if kind == "Pod":
        return [obj]
    if kind == "Job":
        return [pod for pod in live if objects.owned_by(pod, obj)]
    if kind == "CronJob":
        return [pod for pod in live if any(objects.owned_by(pod, job) for job in history)]
    if not objects.observed(obj):
        return None
    if kind == "Deployment":
        revision = objects.revision(obj)
        newest = [rs for rs in history if objects.owned_by(rs, obj) and objects.revision(rs) == revision]
        if not newest:
            return None
        return [pod for pod in live if any(objects.owned_by(pod, rs) for rs in newest)]
    current = objects.current_history_entry(obj, history)
    if current is None:
        return None
    return [pod for pod in live if objects.owned_by(pod, obj) and objects.made_from(pod, current)]


def runs_to_judge(cronjob: dict[str, Any], jobs: list[dict[str, Any]], since: datetime) -> list[dict[str, Any]]:
    """The CronJob's Jobs started at or after `since` from its current job template, oldest first."""
    template = (objects.workload_template(cronjob).get("spec") or {}).get("template") or {}
    digest = objects.template_digest(template)
    horizon = since.replace(microsecond=0)
    found = []
    for job in jobs:
        created = _time(objects.meta(job).get("creationTimestamp"))
        if created is None or created < horizon or not objects.owned_by(job, cronjob):
            continue
        if objects.template_digest(objects.job_pod_template(job)) == digest:
            found.append(job)
    return sorted(found, key=lambda job: objects.meta(job).get("creationTimestamp") or "")


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
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


def _rollout_complete(obj: dict[str, Any], current: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether a StatefulSet's or DaemonSet's rollout is complete, and a one-line summary."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    strategy = spec.get("updateStrategy") or {}
    on_delete = strategy.get("type") == "OnDelete"
    count = {
        key: int(status.get(key) or 0)
        for key in (
            "replicas",
            "readyReplicas",
            "updatedReplicas",
            "availableReplicas",
            "desiredNumberScheduled",
            "numberReady",
            "updatedNumberScheduled",
            "numberUnavailable",
            "numberAvailable",
        )
    }
    if obj.get("kind") == "StatefulSet":
        desired = int(spec.get("replicas", 1))
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        revisions = (status.get("currentRevision"), status.get("updateRevision"))
        summary = (
            f"{count['readyReplicas']}/{desired} replicas ready, {count['updatedReplicas']} on "
            f"{revisions[1]}, current {revisions[0]}"
        )
        ready = count["readyReplicas"] == desired == count["replicas"]
        if on_delete:
            return ready, summary + " (OnDelete)"
        if partition:
            return ready and count["updatedReplicas"] >= desired - partition, summary + f" (partition {partition})"
        done = ready and count["updatedReplicas"] == desired and revisions[0] == revisions[1] and bool(revisions[1])
        return done and len(current) == desired, summary
    desired = count["desiredNumberScheduled"]
    summary = (
        f"{count['numberReady']}/{desired} scheduled pods ready, {count['updatedNumberScheduled']} updated, "
        f"{count['numberUnavailable']} unavailable"
    )
    if on_delete:
        return count["numberReady"] == desired and count["numberUnavailable"] == 0, summary + " (OnDelete)"
    done = count["numberReady"] == desired == count["updatedNumberScheduled"] and len(current) == desired
    return done, summary


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
        finished = _time(previous.get("finishedAt"))
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
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            found.append(f"pod {name} cannot be scheduled: {condition.get('message', '')[:160]}")
    if status.get("phase") == "Failed" and pod.get("spec", {}).get("restartPolicy") == "Always":
        found.append(f"pod {name} failed")
    return list(dict.fromkeys(found))


def _ready(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


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
    if kind == "Deployment":
        progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
        updated = _time((progressing or {}).get("lastUpdateTime"))
        if (
            progressing
            and progressing.get("reason") == "ProgressDeadlineExceeded"
            and updated is not None
            and updated >= since
        ):
            signals.append(f"the rollout exceeded its progress deadline: {progressing.get('message', '')[:160]}")
    if signals:
        return Assessment(health=Health.FAILING, reasons=signals, summary="the fault is still there")
    if kind == "Deployment":
        desired = int((obj.get("spec") or {}).get("replicas", 1))
        counts = {
            key: int(status.get(key) or 0)
            for key in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        }
        ready_pods = sum(1 for pod in current if _ready(pod))
        complete = all(value == desired for value in counts.values()) and ready_pods == desired == len(current)
        summary = (
            f"{counts['readyReplicas']}/{desired} replicas ready, {counts['updatedReplicas']} updated, "
            f"{counts['replicas']} in total"
        )
        if complete:
            return Assessment(health=Health.HEALTHY, summary=f"rollout complete: {summary}")
        return Assessment(health=Health.PROGRESSING, reasons=[f"rollout in progress: {summary}"], summary=summary)
    if kind in {"StatefulSet", "DaemonSet"}:
        complete, summary = _rollout_complete(obj, current)
        if complete and all(_ready(pod) for pod in current):
            return Assessment(health=Health.HEALTHY, summary=f"rollout complete: {summary}")
        return Assessment(health=Health.PROGRESSING, reasons=[f"rollout in progress: {summary}"], summary=summary)
    if kind == "Pod":
        if _ready(obj):
            return Assessment(health=Health.HEALTHY, summary="the pod is Ready")
        return Assessment(health=Health.PROGRESSING, reasons=["the pod is not Ready yet"])
    return Assessment(health=Health.PROGRESSING, reasons=[f"the Job is running ({status.get('active', 0)} active)"])


def same_spec(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    if a is None or b is None:
        return False
    return json.dumps(a.get("spec") or {}, sort_keys=True) == json.dumps(b.get("spec") or {}, sort_keys=True)


# --- the judge ----------------------------------------------------------------------------------------


class Judge:
    """Polls the workload until it is clearly fixed, clearly not, or time is up."""

    def __init__(
        self,
        access: ClusterAccess,
        settings: Settings,
        *,
        poll_seconds: float = 1.0,
        stable_seconds: float | None = None,
        failure_confirm_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Clock = utc_now,
    ) -> None:
        self.access = access
        self.timeout = settings.verify_timeout_seconds
        self.poll_seconds = poll_seconds
        self.stable_seconds = stable_seconds if stable_seconds is not None else min(10.0, self.timeout / 4)
        self.failure_confirm_seconds = (
            failure_confirm_seconds if failure_confirm_seconds is not None else min(10.0, self.timeout / 6)
        )
        self._monotonic = monotonic
        self._clock = clock

    def _observe(self, ref: ObjectRef) -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
        try:
            obj = self.access.get(ref.kind, ref.namespace, ref.name)
        except ApiCallError as error:
            if error.status == 404:
                return None, [], []
            raise
        obj.setdefault("kind", ref.kind)
        if ref.kind == "Pod":
            return obj, [], []
        if ref.kind == "CronJob":
            return obj, self.access.jobs_of(obj), self.access.pods_of(obj)
        selector = objects.label_selector((obj.get("spec") or {}).get("selector"))
        history = self.access.history_of(obj)
        pods = self.access.list_objects("Pod", ref.namespace, label_selector=selector or None)
        return obj, history, pods

    def verify(
        self, baseline: Baseline, *, cancel: threading.Event | None = None, timeout: float | None = None
    ) -> Verdict:
        """Watch `baseline.workload` until success, failure or the deadline (then inconclusive unless failing)."""
        timeout = self.timeout if timeout is None else timeout
        started = self._monotonic()
        since = self._clock().replace(microsecond=0)  # kubelet times have whole seconds
        restarts: dict[str, int] = {}
        healthy_since: float | None = None
        failing_since: float | None = None
        last = Assessment(health=Health.PROGRESSING, reasons=["not observed yet"])
        while True:
            try:
                obj, history, pods = self._observe(baseline.workload)
                last = assess(baseline, obj, history, pods, since, restarts)
            except ApiCallError as error:
                last = Assessment(health=Health.PROGRESSING, reasons=[f"could not read the workload: {error}"])
            now = self._monotonic()
            elapsed = now - started
            if last.health is Health.BROKEN:
                return Verdict(
                    kind=VerdictKind.FAILURE, reason="a guarantee is broken", details=last.reasons, seconds=elapsed
                )
            healthy_since = (healthy_since or now) if last.health is Health.HEALTHY else None
            failing_since = (failing_since or now) if last.health is Health.FAILING else None
            if healthy_since is not None and now - healthy_since >= self.stable_seconds:
                return Verdict(
                    kind=VerdictKind.SUCCESS,
                    seconds=elapsed,
                    reason=f"{last.summary}; no fault signal for {self.stable_seconds:.0f}s",
                )
            if failing_since is not None and now - failing_since >= self.failure_confirm_seconds:
                return Verdict(
                    kind=VerdictKind.FAILURE,
                    reason="the fault persists after the change",
                    details=last.reasons,
                    seconds=elapsed,
                )
            if elapsed >= timeout:
                if last.health is Health.FAILING:
                    return Verdict(
                        kind=VerdictKind.FAILURE,
                        reason="the fault persists after the change",
                        details=last.reasons,
                        seconds=elapsed,
                    )
                if any(reason.startswith(WAITING_FOR_RUN) for reason in last.reasons):
                    return Verdict(
                        kind=VerdictKind.DEFERRED,
                        seconds=elapsed,
                        details=last.reasons,
                        reason=f"no run of the CronJob within {timeout:.0f}s: verified at its next run",
                    )
                return Verdict(
                    kind=VerdictKind.INCONCLUSIVE,
                    seconds=elapsed,
                    reason=f"not healthy within {timeout:.0f}s, but no fault signal either",
                    details=last.reasons,
                )
            if cancel is not None and cancel.is_set():
                return Verdict(
                    kind=VerdictKind.INCONCLUSIVE,
                    reason="verification interrupted: AMOS is stopping",
                    details=last.reasons,
                    seconds=elapsed,
                )
            if cancel is not None:
                cancel.wait(self.poll_seconds)
            else:
                time.sleep(self.poll_seconds)

    def verify_restore(self, snapshot: Snapshot, *, timeout: float = 30.0) -> Verdict:
        """The spec is the snapshot's again and the controller has seen it (the fault may well be back)."""
        started = self._monotonic()
        ref = snapshot.target
        while True:
            elapsed = self._monotonic() - started
            try:
                obj = self.access.get(ref.kind, ref.namespace, ref.name)
            except ApiCallError as error:
                if error.status == 404:
                    return Verdict(kind=VerdictKind.FAILURE, reason=f"{ref} no longer exists", seconds=elapsed)
                obj = None
            if obj is not None:
                if not same_spec(obj, snapshot.workload):
                    return Verdict(
                        kind=VerdictKind.FAILURE,
                        seconds=elapsed,
                        reason="the spec differs from the snapshot (changed again by someone?)",
                    )
                status = obj.get("status") or {}
                generation = int(objects.meta(obj).get("generation") or 0)
                if ref.kind not in k8s.ROLLOUT_KINDS or int(status.get("observedGeneration") or 0) >= generation:
                    return Verdict(
                        kind=VerdictKind.SUCCESS,
                        seconds=elapsed,
                        reason=f"the spec matches the snapshot (generation {generation}) and the "
                        "controller has seen it",
                    )
            if elapsed >= timeout:
                return Verdict(
                    kind=VerdictKind.INCONCLUSIVE,
                    seconds=elapsed,
                    reason="the restored spec was not observed by the controller in time",
                )
            time.sleep(min(self.poll_seconds, 0.5))  # not cancellable: a restore must be confirmed
