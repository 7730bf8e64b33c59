"""The guard rails' cluster side: `IncidentGate` reads what `guard_rules.decide` needs and keeps it durable.

Cooldowns, blocks and fix watches live in the state store, so a restart forgets none of them. An
outage (per namespace) or a storm (cluster-wide) is escalated once, in one grouped report. A
verified fix is watched for `REVERT_WATCH_SECONDS`: when the pod template goes back to what it was
before the fix, AMOS escalates instead of fighting whoever reverted it (`check_revert`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from core import k8s
from core.clock import Clock, utc_now
from core.config import Settings
from core.models import Incident, ObjectRef
from core.report import CLUSTER_WIDE, FailingWorkload, NamespaceOutage
from core.workload_health import ListingState, WorkloadHealthSource
from orchestrator.breaker import ClusterBudget
from orchestrator.guard_rules import GuardDecision, GuardRule, GuardVerdict, decide
from orchestrator.modes import Mode
from orchestrator.outage import NamespaceHealth, Storm, namespace_health
from orchestrator.records import FixWatch, WorkloadState
from orchestrator.store import StateStore
from orchestrator.workload_listing import ApiWorkloads
from tools.cluster import ClusterAccess

log = logging.getLogger(__name__)

REVERT_WATCH_SECONDS = 4 * 3600.0


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
        workloads: WorkloadHealthSource | None = None,
    ) -> None:
        """`workloads`: the watch cache, where monitors run; without it, each incident lists its namespace."""
        self.settings = settings
        self._modes = modes or (lambda namespace: Mode(settings.mode_default))
        self.store = store
        self.access = access
        self.budget = budget
        self._clock = clock
        self._open_incidents = open_incidents
        self._watched = workloads
        self._listing = ApiWorkloads(access)
        self._unreadable: set[str] = set()  # namespaces whose workloads could not be read last time
        self._escalated: dict[str, datetime] = {}  # namespace (outage) or "" (storm) -> when it was escalated
        self._lock = threading.Lock()

    def health(self, namespace: str, incidents: list[Incident]) -> NamespaceHealth | None:
        """From the watch cache when there is one (no API call), else (or until it has listed) from the API."""
        listing = self._watched.workloads(namespace) if self._watched is not None else None
        if listing is None or listing.state is ListingState.NOT_YET:
            listing = self._listing.workloads(namespace)
        with self._lock:  # said once per namespace, not on every incident of it
            first = namespace not in self._unreadable
            if listing.state is ListingState.LISTED:
                self._unreadable.discard(namespace)
            else:
                self._unreadable.add(namespace)
        if listing.state is not ListingState.LISTED:
            if first:
                log.warning(
                    "cannot read the workloads of namespace %s (%s); outage detection skipped",
                    namespace,
                    listing.reason,
                )
            return None
        faulty = [f"{i.workload.kind}/{i.workload.name}" for i in incidents if i.workload.namespace == namespace]
        return namespace_health(namespace, listing.workloads, faulty)

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
