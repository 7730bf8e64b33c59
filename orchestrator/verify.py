"""The judge: did a change fix the fault without breaking a guarantee? Success, failure or inconclusive.

Strict on purpose (a wrong "fixed" is worse than an escalation). Success needs, for a whole
stable window within `verify_timeout_seconds`: the rollout complete and every current pod Ready
(or the Job succeeded), no fault signal on any current pod (image pull, config error, crash,
OOM kill, restart, unschedulable), and the guarantees kept: the workload still exists, is not
scaled to 0 nor below its replicas before the fix, and no container, probe or limit was removed.
A broken guarantee or a persisting fault signal is a failure; anything else at the deadline is
inconclusive (it escalates). `assess` is pure; `Judge` polls the cluster.
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

from core.config import Settings
from core.models import ObjectRef
from orchestrator.store import Clock, utc_now
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess
from tools.snapshot import Snapshot

FAULT_WAITING = frozenset({
    "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "CrashLoopBackOff",
    "CreateContainerConfigError", "CreateContainerError", "RunContainerError", "PreCreateHookError",
    "PostStartHookError",
})
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
MAX_DETAILS = 8


class VerdictKind(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    INCONCLUSIVE = "inconclusive"


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
        replicas = (obj.get("spec") or {}).get("replicas") if ref.kind == "Deployment" else None
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
    if baseline.workload.kind == "Deployment":
        replicas = int((obj.get("spec") or {}).get("replicas", 1))
        if replicas == 0:
            problems.append("the Deployment was scaled to 0")
        elif baseline.replicas is not None and replicas < baseline.replicas:
            problems.append(f"the Deployment was scaled down from {baseline.replicas} to {replicas} replicas")
    current = {str(c.get("name")): c for _, c in objects.containers(obj)}
    for name, probes in baseline.probes.items():
        container = current.get(name)
        if container is None:
            problems.append(f"container {name} was removed")
            continue
        problems += [f"the {probe} of container {name} was removed" for probe in probes if not container.get(probe)]
        present = ((container.get("resources") or {}).get("limits") or {}).keys()
        problems += [f"the {resource} limit of container {name} was removed"
                     for resource in baseline.limits.get(name, []) if resource not in present]
    return problems


def current_pods(obj: dict[str, Any], replicasets: list[dict[str, Any]], pods: list[dict[str, Any]]
                 ) -> list[dict[str, Any]] | None:
    """The live pods of the workload's current template; None while the controller has not caught up."""
    live = [pod for pod in pods if not objects.meta(pod).get("deletionTimestamp")]
    kind = obj.get("kind")
    if kind == "Pod":
        return [obj]
    if kind == "Job":
        return [pod for pod in live if objects.owned_by(pod, obj)]
    status = obj.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(objects.meta(obj).get("generation") or 0):
        return None
    revision = objects.revision(obj)
    newest = [rs for rs in replicasets if objects.owned_by(rs, obj) and objects.revision(rs) == revision]
    if not newest:
        return None
    return [pod for pod in live if any(objects.owned_by(pod, rs) for rs in newest)]


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
            found.append(f"pod {name} container {container} exited with {terminated.get('exitCode')} "
                         f"({terminated.get('reason')})")
        previous = last.get("terminated") or {}
        finished = _time(previous.get("finishedAt"))
        if previous and finished is not None and finished >= since and int(previous.get("exitCode") or 0) != 0:
            found.append(f"pod {name} container {container} was {previous.get('reason')} "
                         f"(exit {previous.get('exitCode')}) during verification")
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
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def assess(baseline: Baseline, obj: dict[str, Any] | None, replicasets: list[dict[str, Any]],
           pods: list[dict[str, Any]], since: datetime, restarts: dict[str, int]) -> Assessment:
    """One look at the workload: healthy, progressing, failing or broken, with the reasons."""
    broken = broken_guarantees(baseline, obj)
    if broken or obj is None:
        return Assessment(health=Health.BROKEN, reasons=broken, summary="a guarantee is broken")
    kind = obj.get("kind")
    status = obj.get("status") or {}
    if kind == "Job":
        failed = next((c for c in status.get("conditions") or [] if c.get("type") == "Failed"
                       and c.get("status") == "True"), None)
        if failed is not None:
            return Assessment(health=Health.BROKEN, reasons=[
                f"the Job failed: {failed.get('reason')}: {failed.get('message', '')[:200]}"])
        wanted = int((obj.get("spec") or {}).get("completions") or 1)
        if int(status.get("succeeded") or 0) >= wanted:
            return Assessment(health=Health.HEALTHY, summary=f"the Job succeeded ({status.get('succeeded')} pods)")
    current = current_pods(obj, replicasets, pods)
    if current is None:
        return Assessment(health=Health.PROGRESSING, reasons=["the controller has not caught up with the new spec"])
    signals = [signal for pod in current for signal in pod_signals(pod, since, restarts)]
    if kind == "Deployment":
        progressing = next((c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), None)
        updated = _time((progressing or {}).get("lastUpdateTime"))
        if (progressing and progressing.get("reason") == "ProgressDeadlineExceeded"
                and updated is not None and updated >= since):
            signals.append(f"the rollout exceeded its progress deadline: {progressing.get('message', '')[:160]}")
    if signals:
        return Assessment(health=Health.FAILING, reasons=signals, summary="the fault is still there")
    if kind == "Deployment":
        desired = int((obj.get("spec") or {}).get("replicas", 1))
        counts = {key: int(status.get(key) or 0) for key in
                  ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")}
        ready_pods = sum(1 for pod in current if _ready(pod))
        complete = all(value == desired for value in counts.values()) and ready_pods == desired == len(current)
        summary = (f"{counts['readyReplicas']}/{desired} replicas ready, {counts['updatedReplicas']} updated, "
                   f"{counts['replicas']} in total")
        if complete:
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
        selector = objects.label_selector((obj.get("spec") or {}).get("selector"))
        replicasets = self.access.replicasets_of(obj) if ref.kind == "Deployment" else []
        pods = self.access.list_objects("Pod", ref.namespace, label_selector=selector or None)
        return obj, replicasets, pods

    def verify(self, baseline: Baseline, *, cancel: threading.Event | None = None,
               timeout: float | None = None) -> Verdict:
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
                obj, replicasets, pods = self._observe(baseline.workload)
                last = assess(baseline, obj, replicasets, pods, since, restarts)
            except ApiCallError as error:
                last = Assessment(health=Health.PROGRESSING, reasons=[f"could not read the workload: {error}"])
            now = self._monotonic()
            elapsed = now - started
            if last.health is Health.BROKEN:
                return Verdict(kind=VerdictKind.FAILURE, reason="a guarantee is broken", details=last.reasons,
                               seconds=elapsed)
            healthy_since = (healthy_since or now) if last.health is Health.HEALTHY else None
            failing_since = (failing_since or now) if last.health is Health.FAILING else None
            if healthy_since is not None and now - healthy_since >= self.stable_seconds:
                return Verdict(kind=VerdictKind.SUCCESS, seconds=elapsed,
                               reason=f"{last.summary}; no fault signal for {self.stable_seconds:.0f}s")
            if failing_since is not None and now - failing_since >= self.failure_confirm_seconds:
                return Verdict(kind=VerdictKind.FAILURE, reason="the fault persists after the change",
                               details=last.reasons, seconds=elapsed)
            if elapsed >= timeout:
                if last.health is Health.FAILING:
                    return Verdict(kind=VerdictKind.FAILURE, reason="the fault persists after the change",
                                   details=last.reasons, seconds=elapsed)
                return Verdict(kind=VerdictKind.INCONCLUSIVE, seconds=elapsed,
                               reason=f"not healthy within {timeout:.0f}s, but no fault signal either",
                               details=last.reasons)
            if cancel is not None and cancel.is_set():
                return Verdict(kind=VerdictKind.INCONCLUSIVE, reason="verification interrupted: AMOS is stopping",
                               details=last.reasons, seconds=elapsed)
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
                    return Verdict(kind=VerdictKind.FAILURE, seconds=elapsed,
                                   reason="the spec differs from the snapshot (changed again by someone?)")
                status = obj.get("status") or {}
                generation = int(objects.meta(obj).get("generation") or 0)
                if ref.kind != "Deployment" or int(status.get("observedGeneration") or 0) >= generation:
                    return Verdict(kind=VerdictKind.SUCCESS, seconds=elapsed,
                                   reason=f"the spec matches the snapshot (generation {generation}) and the "
                                          "controller has seen it")
            if elapsed >= timeout:
                return Verdict(kind=VerdictKind.INCONCLUSIVE, seconds=elapsed,
                               reason="the restored spec was not observed by the controller in time")
            time.sleep(min(self.poll_seconds, 0.5))  # not cancellable: a restore must be confirmed
