"""Guard rails decided before any session: may AMOS act on this workload now, only propose, wait, or stay out?

The decision (`decide`) is a pure function of what was read and of `now`, so every rule
is unit-tested with an injected clock. `IncidentGate` reads that input from the cluster and
keeps the durable parts in the state store:

- cooldown per workload after any change AMOS made (`workload_cooldown_seconds`): later incidents wait;
- block per workload after a failed pair of attempts, an inconclusive verification, a conflict with a
  person or a reverted fix (`workload_block_seconds`): incidents are skipped, a person was told;
- outage: in a namespace where at least `outage_failing_ratio` of at least `outage_min_workloads`
  workloads fail, AMOS does nothing and escalates once;
- GitOps/Helm-managed workloads (Argo CD, Flux, Helm: `core.k8s.gitops_managers`), dry-run mode,
  protected workloads and an open circuit breaker: diagnosis and a proposal only, no change;
- the cluster-wide action budget (`actions_per_hour`): when it is used up the circuit breaker opens and
  stays open until a person resets it (ConfigMap `amos-circuit-breaker` in the state namespace: delete
  it, or set `data.state` to `closed`);
- a verified fix is watched for `REVERT_WATCH_SECONDS`; when the pod template goes back to what it was
  before the fix, AMOS escalates instead of fighting whoever reverted it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from core import k8s
from core.clock import Clock, utc_now
from core.config import Settings
from core.models import Incident, ObjectRef
from core.report import CLUSTER_WIDE, FailingWorkload, NamespaceOutage
from orchestrator.breaker import BREAKER_NAME, ClusterBudget
from orchestrator.modes import Mode
from orchestrator.records import BreakerState, FixWatch, WorkloadState
from orchestrator.store import StateStore
from tools import objects
from tools.cluster import ClusterAccess

log = logging.getLogger(__name__)

REVERT_WATCH_SECONDS = 4 * 3600.0


class GuardVerdict(StrEnum):
    PROCEED = "proceed"  # snapshot, session, verify
    PROPOSE = "propose"  # diagnose and recommend; change nothing
    APPROVE = "approve"  # diagnose, validate and store the fix; apply it only once a person approves
    DEFER = "defer"  # look again at `retry_at`
    SKIP = "skip"  # do nothing now (a person already knows, or nothing is left to do)
    ESCALATE = "escalate"  # do nothing, tell a person


class GuardRule(StrEnum):
    """Which guard rail decided."""

    OK = "ok"
    GONE = "gone"
    IGNORED = "ignored"
    STORM = "storm"
    OUTAGE = "outage"
    BLOCKED = "blocked"
    COOLDOWN = "cooldown"
    DRY_RUN = "dry_run"
    OBSERVE = "observe"
    APPROVAL = "approval"
    GITOPS = "gitops"
    PROTECTED = "protected"
    BREAKER = "breaker"
    BUDGET = "budget"


class GuardDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    verdict: GuardVerdict
    rule: GuardRule
    reason: str
    retry_at: datetime | None = None
    outage: NamespaceOutage | None = None  # every failing workload, for the one grouped report


class NamespaceHealth(BaseModel):
    namespace: str
    total: int
    failing: list[str]

    @property
    def ratio(self) -> float:
        return len(self.failing) / self.total if self.total else 0.0


class Storm(BaseModel):
    """Workloads that started failing cluster-wide within the storm window (a bad base image, a bad node)."""

    workloads: list[str]
    window_seconds: float


# --- pure readings ----------------------------------------------------------------------------------


def _desired(obj: dict[str, Any]) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def workload_failing(obj: dict[str, Any]) -> bool | None:
    """True/False for a workload that counts towards outage detection, None for one that does not."""
    kind, status = obj.get("kind"), obj.get("status") or {}
    if kind in k8s.SCALABLE_KINDS:
        desired = _desired(obj)
        if desired == 0:
            return None
        progressing = _condition(obj, "Progressing")
        stuck = progressing is not None and progressing.get("status") == "False"
        return stuck or int(status.get("readyReplicas") or 0) < desired
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        return None if desired == 0 else int(status.get("numberReady") or 0) < desired
    if kind == "Job":
        failed = _condition(obj, "Failed")
        return failed is not None and failed.get("status") == "True"
    return None


def namespace_health(namespace: str, workloads: list[dict[str, Any]], faulty: Iterable[str] = ()) -> NamespaceHealth:
    """`faulty`: workloads (`Kind/name`) with an open incident, e.g. a bad rollout whose old pods still serve."""
    counted = [
        (f"{obj.get('kind')}/{objects.meta(obj).get('name')}", bad)
        for obj in workloads
        if (bad := workload_failing(obj)) is not None
    ]
    names = {name for name, _ in counted}
    failing = [name for name, bad in counted if bad]
    extra = sorted(set(faulty) - set(failing))
    return NamespaceHealth(
        namespace=namespace, total=len(counted) + len(set(extra) - names), failing=sorted(failing + extra)
    )


def is_outage(health: NamespaceHealth, settings: Settings) -> bool:
    return health.total >= settings.outage_min_workloads and health.ratio >= settings.outage_failing_ratio


def template_hash(obj: dict[str, Any] | None) -> str:
    """A hash of what a fix changes: the pod template (the pod spec for a bare Pod)."""
    if not obj:
        return ""
    if obj.get("kind") == "Pod":
        shown: Any = obj.get("spec") or {}
    else:
        template = json.loads(json.dumps((obj.get("spec") or {}).get("template") or {}))
        labels = (template.get("metadata") or {}).get("labels") or {}
        for key in k8s.JOB_GENERATED_LABELS:
            labels.pop(key, None)
        shown = {"template": template, "replicas": (obj.get("spec") or {}).get("replicas")}
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:24]


class RevertStatus(StrEnum):
    HOLDING = "holding"  # the fix is still in place
    REVERTED = "reverted"  # the template is back to what it was before the fix
    SUPERSEDED = "superseded"  # someone changed it to something else: no longer AMOS's business
    GONE = "gone"  # the workload was deleted
    EXPIRED = "expired"  # watched long enough


def check_revert(
    watch: FixWatch, obj: dict[str, Any] | None, now: datetime, window_seconds: float = REVERT_WATCH_SECONDS
) -> RevertStatus:
    if obj is None:
        return RevertStatus.GONE
    current = template_hash(obj)
    if current == watch.before_hash and current != watch.after_hash:
        return RevertStatus.REVERTED
    if (now - watch.fixed_at).total_seconds() > window_seconds:
        return RevertStatus.EXPIRED
    if current != watch.after_hash:
        return RevertStatus.SUPERSEDED
    return RevertStatus.HOLDING


def decide(
    *,
    settings: Settings,
    now: datetime,
    workload: dict[str, Any] | None,
    state: WorkloadState,
    breaker: BreakerState,
    budget_used: int,
    health: NamespaceHealth | None,
    storm: Storm | None = None,
    mode: Mode = Mode.AUTO,
) -> GuardDecision:
    """The guard rails, in order; the first rule that applies decides."""
    if workload is None:
        return GuardDecision(verdict=GuardVerdict.SKIP, rule=GuardRule.GONE, reason="the workload no longer exists")
    name = f"{workload.get('kind')}/{objects.meta(workload).get('name')}"
    if objects.is_marked(workload, settings.ignore_annotation):
        return GuardDecision(
            verdict=GuardVerdict.SKIP,
            rule=GuardRule.IGNORED,
            reason=f"{name} is opted out ({settings.ignore_annotation})",
        )
    if storm is not None and len(storm.workloads) >= settings.storm_min_workloads:
        shown = ", ".join(storm.workloads[:8]) + (
            f" and {len(storm.workloads) - 8} more" if len(storm.workloads) > 8 else ""
        )
        return GuardDecision(
            verdict=GuardVerdict.ESCALATE,
            rule=GuardRule.STORM,
            reason=(
                f"{len(storm.workloads)} workloads across the cluster started failing within "
                f"{storm.window_seconds / 60:g} minutes ({shown}): a cluster-wide cause is likely, so AMOS "
                "changes nothing until a person looks"
            ),
        )
    if health is not None and is_outage(health, settings):
        shown = ", ".join(health.failing[:8]) + (
            f" and {len(health.failing) - 8} more" if len(health.failing) > 8 else ""
        )
        return GuardDecision(
            verdict=GuardVerdict.ESCALATE,
            rule=GuardRule.OUTAGE,
            reason=(
                f"namespace {health.namespace} looks like an outage: {len(health.failing)} of {health.total} "
                f"workloads are failing ({shown}); AMOS does not act during an outage"
            ),
        )
    if state.blocked_until is not None and now < state.blocked_until:
        return GuardDecision(
            verdict=GuardVerdict.SKIP,
            rule=GuardRule.BLOCKED,
            reason=f"{name} is blocked until {state.blocked_until:%Y-%m-%d %H:%M:%S} UTC: "
            f"{state.block_reason or 'earlier attempts failed'}",
            retry_at=state.blocked_until,
        )
    if state.last_action_at is not None:
        until = state.last_action_at + timedelta(seconds=settings.workload_cooldown_seconds)
        if now < until:
            return GuardDecision(
                verdict=GuardVerdict.DEFER,
                rule=GuardRule.COOLDOWN,
                reason=f"AMOS changed {name} at {state.last_action_at:%H:%M:%S}; cooldown until {until:%H:%M:%S}",
                retry_at=until,
            )
    if settings.dry_run:
        return GuardDecision(
            verdict=GuardVerdict.PROPOSE,
            rule=GuardRule.DRY_RUN,
            reason="dry-run mode: AMOS diagnoses and recommends, it changes nothing",
        )
    if mode is Mode.OBSERVE:
        return GuardDecision(
            verdict=GuardVerdict.PROPOSE,
            rule=GuardRule.OBSERVE,
            reason=f"namespace {objects.meta(workload).get('namespace')} is in observe mode: AMOS "
            "diagnoses and reports, it changes nothing",
        )
    managers = k8s.gitops_managers(workload)
    if managers:
        return GuardDecision(
            verdict=GuardVerdict.PROPOSE,
            rule=GuardRule.GITOPS,
            reason=f"{name} is managed by {' and '.join(managers)}; a change made in the cluster would be "
            "reverted at the next sync, so AMOS only proposes the fix (make it in Git)",
        )
    if objects.is_marked(workload, settings.protected_label):
        return GuardDecision(
            verdict=GuardVerdict.PROPOSE,
            rule=GuardRule.PROTECTED,
            reason=f"{name} is protected ({settings.protected_label}); AMOS only proposes",
        )
    if breaker.state == "open":
        since = f" since {breaker.opened_at:%Y-%m-%d %H:%M:%S} UTC" if breaker.opened_at else ""
        return GuardDecision(
            verdict=GuardVerdict.PROPOSE,
            rule=GuardRule.BREAKER,
            reason=f"the circuit breaker is open{since} ({breaker.reason or 'no reason recorded'}); "
            f"AMOS only proposes until a person resets it (ConfigMap {BREAKER_NAME} in "
            f"namespace {settings.store_namespace})",
        )
    if budget_used >= settings.actions_per_hour:
        return GuardDecision(
            verdict=GuardVerdict.PROPOSE,
            rule=GuardRule.BUDGET,
            reason=f"the action budget of {settings.actions_per_hour} per hour is used up",
        )
    if mode is Mode.APPROVE:
        return GuardDecision(
            verdict=GuardVerdict.APPROVE,
            rule=GuardRule.APPROVAL,
            reason=f"namespace {objects.meta(workload).get('namespace')} is in approve mode: AMOS "
            "applies a fix only after a person approves it",
        )
    return GuardDecision(verdict=GuardVerdict.PROCEED, rule=GuardRule.OK, reason="guard rails passed")


# --- state kept in the cluster ------------------------------------------------------------------------


class IncidentGate:
    """Reads what `decide` needs from the cluster and the detector; keeps cooldowns, blocks and fix watches durable.

    An outage (per namespace) and a storm (cluster-wide) are escalated once, in one grouped report;
    the other incidents of it are skipped with an Event, until the window has passed.
    """

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        access: ClusterAccess,
        budget: ClusterBudget,
        clock: Clock = utc_now,
        open_incidents: Callable[[], list[Incident]] = list,
        modes: Callable[[str], Mode] | None = None,
    ) -> None:
        self.settings = settings
        self._modes = modes or (lambda namespace: Mode(settings.mode_default))
        self.store = store
        self.access = access
        self.budget = budget
        self._clock = clock
        self._open_incidents = open_incidents
        self._escalated: dict[str, datetime] = {}  # namespace (outage) or "" (storm) -> when it was escalated
        self._lock = threading.Lock()

    def health(self, namespace: str, incidents: list[Incident]) -> NamespaceHealth | None:
        workloads: list[dict[str, Any]] = []
        try:
            for kind in k8s.WORKLOAD_KINDS:
                for obj in self.access.list_objects(kind, namespace):
                    obj.setdefault("kind", kind)
                    if kind == "Job" and objects.controller_ref(obj) is not None:
                        continue  # a CronJob's run is not a workload of its own
                    workloads.append(obj)
        except Exception:
            log.exception("could not read the workloads of namespace %s; outage detection skipped", namespace)
            return None
        faulty = [f"{i.workload.kind}/{i.workload.name}" for i in incidents if i.workload.namespace == namespace]
        return namespace_health(namespace, workloads, faulty)

    def _mode(self, namespace: str, approved: bool) -> Mode:
        mode = self._modes(namespace)
        return Mode.AUTO if approved and mode is Mode.APPROVE else mode

    def _storm(self, incidents: list[Incident], now: datetime) -> Storm:
        window = self.settings.storm_window_seconds
        recent = {str(i.workload) for i in incidents if (now - i.first_seen).total_seconds() <= window}
        return Storm(workloads=sorted(recent), window_seconds=window)

    def evaluate(self, incident: Incident, workload: dict[str, Any] | None, *, approved: bool = False) -> GuardDecision:
        """The guard rails for `incident`; `approved`: a person approved this fix, so approve mode lets it through."""
        now = self._clock()
        state = self.store.workload_state(incident.workload)
        breaker = self.budget.sync()
        incidents = [i for i in self._open_incidents() if i.workload != incident.workload] + [incident]
        health = self.health(incident.workload.namespace, incidents)
        decision = decide(
            settings=self.settings,
            now=now,
            workload=workload,
            state=state,
            breaker=breaker,
            budget_used=self.budget.used(),
            health=health,
            storm=self._storm(incidents, now),
            mode=self._mode(incident.workload.namespace, approved),
        )
        if decision.rule is GuardRule.BUDGET:
            self.budget.trip(decision.reason)
        if decision.rule in (GuardRule.OUTAGE, GuardRule.STORM):
            key = incident.workload.namespace if decision.rule is GuardRule.OUTAGE else ""
            window = timedelta(seconds=self.settings.workload_block_seconds)
            with self._lock:
                escalated = self._escalated.get(key)
                if escalated is not None and now - escalated < window:
                    return decision.model_copy(update={"verdict": GuardVerdict.SKIP})
                self._escalated[key] = now
            outage = self._grouped(decision, incident, incidents, health)
            return decision.model_copy(update={"outage": outage})
        return decision

    def _grouped(
        self, decision: GuardDecision, incident: Incident, incidents: list[Incident], health: NamespaceHealth | None
    ) -> NamespaceOutage:
        """Every failing workload of the outage (or storm), each with what the cluster says is wrong."""
        namespace = incident.workload.namespace if decision.rule is GuardRule.OUTAGE else ""
        listed = {i.workload: i for i in incidents if not namespace or i.workload.namespace == namespace}
        failing = [
            FailingWorkload(
                workload=ref,
                kind=item.kind,
                diagnosis="; ".join(dict.fromkeys(f"{e.reason}: {e.message}".strip(": ") for e in item.evidence[:3])),
            )
            for ref, item in sorted(listed.items(), key=lambda pair: str(pair[0]))
        ]
        total = health.total if namespace and health is not None else len(failing)
        return NamespaceOutage(namespace=namespace or CLUSTER_WIDE, total_workloads=total, failing=failing)

    def note_change(self, ref: ObjectRef) -> None:
        """AMOS changed `ref` (a fix or a restore): the cooldown starts now."""
        now = self._clock()
        self.store.update_workload_state(ref, lambda state: setattr(state, "last_action_at", now))

    def block(self, ref: ObjectRef, reason: str) -> None:
        until = self._clock() + timedelta(seconds=self.settings.workload_block_seconds)

        def apply(state: WorkloadState) -> None:
            state.blocked_until, state.block_reason = until, reason

        self.store.update_workload_state(ref, apply)

    def watch_fix(self, ref: ObjectRef, watch: FixWatch) -> None:
        self.store.update_workload_state(ref, lambda state: setattr(state, "fix", watch))

    def end_watch(self, ref: ObjectRef) -> None:
        self.store.update_workload_state(ref, lambda state: setattr(state, "fix", None))
