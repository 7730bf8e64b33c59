"""Guard rails decided before any session: may AMOS act on this workload now, only propose, wait, or stay out?

The decision (`decide`) is a pure function of what was read and of `now`, so every rule
is unit-tested with an injected clock. `GuardRails` reads that input from the cluster and
keeps the durable parts in the state store:

- cooldown per workload after any change AMOS made (`workload_cooldown_seconds`): later incidents wait;
- block per workload after a failed pair of attempts, an inconclusive verification, a conflict with a
  person or a reverted fix (`workload_block_seconds`): incidents are skipped, a person was told;
- outage: in a namespace where at least `outage_failing_ratio` of at least `outage_min_workloads`
  workloads fail, AMOS does nothing and escalates once;
- GitOps/Helm-managed workloads (Argo CD, Flux, Helm), dry-run mode, protected workloads and an open
  circuit breaker: diagnosis and a proposal only, no change;
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
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.clock import Clock, utc_now
from core.config import Settings
from core.models import Incident, ObjectRef
from orchestrator.records import BreakerState, FixWatch, WorkloadState
from orchestrator.store import BREAKER_NAME, StateStore
from tools import objects
from tools.cluster import ClusterAccess
from tools.policy import HOUR_SECONDS, ActionBudget

log = logging.getLogger(__name__)

REVERT_WATCH_SECONDS = 4 * 3600.0
GITOPS_PREFIXES = {
    "argocd.argoproj.io/": "Argo CD",
    "kustomize.toolkit.fluxcd.io/": "Flux (Kustomization)",
    "helm.toolkit.fluxcd.io/": "Flux (HelmRelease)",
}
# Labels a Job controller stamps on its pod template; they change when a Job is re-created.
_VOLATILE_TEMPLATE_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
                             "batch.kubernetes.io/job-name")


class GuardVerdict(StrEnum):
    PROCEED = "proceed"  # snapshot, session, verify
    PROPOSE = "propose"  # diagnose and recommend; change nothing
    DEFER = "defer"  # look again at `retry_at`
    SKIP = "skip"  # do nothing now (a person already knows, or nothing is left to do)
    ESCALATE = "escalate"  # do nothing, tell a person


class GuardDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    verdict: GuardVerdict
    rule: str
    reason: str
    retry_at: datetime | None = None


class NamespaceHealth(BaseModel):
    namespace: str
    total: int
    failing: list[str]

    @property
    def ratio(self) -> float:
        return len(self.failing) / self.total if self.total else 0.0


# --- pure readings ----------------------------------------------------------------------------------


def gitops_manager(obj: dict[str, Any]) -> str | None:
    """Who reconciles this object from Git (or a chart), when its labels/annotations say so."""
    labels = objects.labels_of(obj)
    annotations: dict[str, str] = dict(objects.meta(obj).get("annotations") or {})
    keys = set(labels) | set(annotations)
    for prefix, manager in GITOPS_PREFIXES.items():
        if any(key.startswith(prefix) for key in keys):
            return manager
    managed_by = labels.get("app.kubernetes.io/managed-by", "").strip().lower()
    if managed_by == "helm" and "app.kubernetes.io/instance" in labels:
        return "Helm"
    if "meta.helm.sh/release-name" in annotations:
        return "Helm"
    return None


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
    if kind in ("Deployment", "StatefulSet"):
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


def namespace_health(namespace: str, workloads: list[dict[str, Any]]) -> NamespaceHealth:
    counted = [(obj, bad) for obj in workloads if (bad := workload_failing(obj)) is not None]
    failing = sorted(f"{obj.get('kind')}/{objects.meta(obj).get('name')}" for obj, bad in counted if bad)
    return NamespaceHealth(namespace=namespace, total=len(counted), failing=failing)


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
        for key in _VOLATILE_TEMPLATE_LABELS:
            labels.pop(key, None)
        shown = {"template": template, "replicas": (obj.get("spec") or {}).get("replicas")}
    return hashlib.sha256(json.dumps(shown, sort_keys=True).encode()).hexdigest()[:24]


class RevertStatus(StrEnum):
    HOLDING = "holding"  # the fix is still in place
    REVERTED = "reverted"  # the template is back to what it was before the fix
    SUPERSEDED = "superseded"  # someone changed it to something else: no longer AMOS's business
    GONE = "gone"  # the workload was deleted
    EXPIRED = "expired"  # watched long enough


def check_revert(watch: FixWatch, obj: dict[str, Any] | None, now: datetime,
                 window_seconds: float = REVERT_WATCH_SECONDS) -> RevertStatus:
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
) -> GuardDecision:
    """The guard rails, in order; the first rule that applies decides."""
    if workload is None:
        return GuardDecision(verdict=GuardVerdict.SKIP, rule="gone", reason="the workload no longer exists")
    name = f"{workload.get('kind')}/{objects.meta(workload).get('name')}"
    if objects.is_marked(workload, settings.ignore_annotation):
        return GuardDecision(verdict=GuardVerdict.SKIP, rule="ignored",
                             reason=f"{name} is opted out ({settings.ignore_annotation})")
    if health is not None and is_outage(health, settings):
        return GuardDecision(
            verdict=GuardVerdict.ESCALATE, rule="outage",
            reason=(f"namespace {health.namespace} looks like an outage: {len(health.failing)} of {health.total} "
                    f"workloads are failing ({', '.join(health.failing[:8])}); AMOS does not act during an outage"),
        )
    if state.blocked_until is not None and now < state.blocked_until:
        return GuardDecision(verdict=GuardVerdict.SKIP, rule="blocked",
                             reason=f"{name} is blocked until {state.blocked_until:%Y-%m-%d %H:%M:%S} UTC: "
                                    f"{state.block_reason or 'earlier attempts failed'}",
                             retry_at=state.blocked_until)
    if state.last_action_at is not None:
        until = state.last_action_at + timedelta(seconds=settings.workload_cooldown_seconds)
        if now < until:
            return GuardDecision(verdict=GuardVerdict.DEFER, rule="cooldown",
                                 reason=f"AMOS changed {name} at {state.last_action_at:%H:%M:%S}; cooldown until "
                                        f"{until:%H:%M:%S}", retry_at=until)
    if settings.dry_run:
        return GuardDecision(verdict=GuardVerdict.PROPOSE, rule="dry_run",
                             reason="dry-run mode: AMOS diagnoses and recommends, it changes nothing")
    manager = gitops_manager(workload)
    if manager is not None:
        return GuardDecision(verdict=GuardVerdict.PROPOSE, rule="gitops",
                             reason=f"{name} is managed by {manager}; a change made in the cluster would be "
                                    "reverted at the next sync, so AMOS only proposes the fix (make it in Git)")
    if objects.is_marked(workload, settings.protected_label):
        return GuardDecision(verdict=GuardVerdict.PROPOSE, rule="protected",
                             reason=f"{name} is protected ({settings.protected_label}); AMOS only proposes")
    if breaker.state == "open":
        since = f" since {breaker.opened_at:%Y-%m-%d %H:%M:%S} UTC" if breaker.opened_at else ""
        return GuardDecision(verdict=GuardVerdict.PROPOSE, rule="breaker",
                             reason=f"the circuit breaker is open{since} ({breaker.reason or 'no reason recorded'}); "
                                    f"AMOS only proposes until a person resets it (ConfigMap {BREAKER_NAME} in "
                                    f"namespace {settings.store_namespace})")
    if budget_used >= settings.actions_per_hour:
        return GuardDecision(verdict=GuardVerdict.PROPOSE, rule="budget",
                             reason=f"the action budget of {settings.actions_per_hour} per hour is used up")
    return GuardDecision(verdict=GuardVerdict.PROCEED, rule="ok", reason="guard rails passed")


# --- state kept in the cluster ------------------------------------------------------------------------


class ClusterBudget(ActionBudget):
    """The hourly action budget every session shares (the policy guard counts against it), persisted in
    the breaker ConfigMap so it survives restarts. Using it up opens the circuit breaker."""

    def __init__(self, store: StateStore, settings: Settings, clock: Clock = utc_now) -> None:
        super().__init__(settings.actions_per_hour, clock=lambda: clock().timestamp())
        self._store = store
        self._wall = clock
        self._state = BreakerState()
        self._guard = threading.Lock()

    def _prune(self, actions: list[datetime]) -> list[datetime]:
        horizon = self._wall() - timedelta(seconds=HOUR_SECONDS)
        return sorted(t for t in actions if t > horizon)

    def sync(self) -> BreakerState:
        """Re-read the breaker (a person may have reset it) and drop actions older than an hour."""

        def refresh(state: BreakerState, reset: bool) -> None:
            if reset:
                log.warning("the circuit breaker was reset by a person; the action budget starts afresh")
                state.actions, state.opened_at, state.reason = [], None, ""
            state.actions = self._prune(state.actions)

        try:
            state = self._store.update_breaker(refresh)
        except Exception:
            log.exception("could not read the circuit breaker; keeping the last known state")
            return self.state
        with self._guard:
            self._state = state
        return state

    @property
    def state(self) -> BreakerState:
        with self._guard:
            return self._state.model_copy(deep=True)

    def used(self) -> int:
        with self._guard:
            self._state.actions = self._prune(self._state.actions)
            return len(self._state.actions)

    def times(self) -> list[float]:
        with self._guard:
            return [t.timestamp() for t in self._prune(self._state.actions)]

    def note(self) -> None:
        """Count one action now, in memory and in the cluster; the breaker opens when the budget is used up."""
        now = self._wall()
        per_hour = self.per_hour

        def add(state: BreakerState, reset: bool) -> None:
            if reset:
                state.actions, state.opened_at, state.reason = [], None, ""
            state.actions = self._prune(state.actions + [now])
            if len(state.actions) >= per_hour and state.state != "open":
                state.state, state.opened_at = "open", now
                state.reason = f"the action budget of {per_hour} per hour was used up"
                log.warning("circuit breaker opened: %s", state.reason)

        with self._guard:
            self._state.actions = self._prune(self._state.actions + [now])
        try:
            state = self._store.update_breaker(add)
        except Exception:
            log.exception("could not record an action in the circuit breaker")
            return
        with self._guard:
            self._state = state

    def trip(self, reason: str) -> BreakerState:
        """Open the breaker (it stays open until a person resets it)."""
        now = self._wall()

        def open_it(state: BreakerState, reset: bool) -> None:
            if state.state != "open":
                state.state, state.opened_at, state.reason = "open", now, reason

        try:
            state = self._store.update_breaker(open_it)
        except Exception:
            log.exception("could not open the circuit breaker")
            return self.state
        with self._guard:
            self._state = state
        return state


class GuardRails:
    """Reads what `decide` needs from the cluster and keeps cooldowns, blocks and fix watches durable."""

    def __init__(self, settings: Settings, store: StateStore, access: ClusterAccess, budget: ClusterBudget,
                 clock: Clock = utc_now) -> None:
        self.settings = settings
        self.store = store
        self.access = access
        self.budget = budget
        self._clock = clock
        self._outages: dict[str, datetime] = {}  # namespace -> when the outage was escalated
        self._lock = threading.Lock()

    def health(self, namespace: str) -> NamespaceHealth | None:
        workloads: list[dict[str, Any]] = []
        try:
            for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
                for obj in self.access.list_objects(kind, namespace):
                    obj.setdefault("kind", kind)
                    workloads.append(obj)
        except Exception:
            log.exception("could not read the workloads of namespace %s; outage detection skipped", namespace)
            return None
        return namespace_health(namespace, workloads)

    def evaluate(self, incident: Incident, workload: dict[str, Any] | None) -> GuardDecision:
        now = self._clock()
        state = self.store.workload_state(incident.workload)
        breaker = self.budget.sync()
        decision = decide(
            settings=self.settings, now=now, workload=workload, state=state, breaker=breaker,
            budget_used=self.budget.used(), health=self.health(incident.workload.namespace),
        )
        if decision.rule == "budget":
            self.budget.trip(decision.reason)
        if decision.rule == "outage":
            with self._lock:
                escalated = self._outages.get(incident.workload.namespace)
                window = timedelta(seconds=self.settings.workload_block_seconds)
                if escalated is not None and now - escalated < window:
                    return decision.model_copy(update={"verdict": GuardVerdict.SKIP})
                self._outages[incident.workload.namespace] = now
        return decision

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
