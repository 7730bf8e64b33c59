"""The judge: did a change fix the fault without breaking a guarantee? Success, failure or inconclusive.

`Judge` polls the workload and reads each look with `assessment.assess`. Success needs a healthy
look for a whole stable window within `verify_timeout_seconds`; a broken guarantee, or a fault
signal that persists for `failure_confirm_seconds`, is a failure; anything else at the deadline is
inconclusive (it escalates). A CronJob whose next run from the current job template did not come
within the deadline is `deferred` ("verified at the next run"), which is not a failure: the change
stays and the report says so.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from core import k8s
from core.clock import Clock, utc_now
from core.config import Settings
from core.models import ObjectRef
from orchestrator.assessment import WAITING_FOR_RUN, Assessment, Baseline, Health, assess
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess
from tools.snapshot import Snapshot

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
