"""The guard rails as one pure decision: may AMOS act on this workload now, only propose, wait, or stay out?

`decide` is a pure function of what was read and of `now`, so every rule is unit-tested with an
injected clock; `guardrails.IncidentGate` reads its input from the cluster. The rules, in order
(the first that applies decides):

- a workload that is gone or opted out (`ignore_annotation`) is skipped;
- storm: when at least `storm_min_workloads` workloads cluster-wide started failing within the storm
  window, AMOS changes nothing and escalates once (a bad base image, a bad node);
- outage: in a namespace where at least `outage_failing_ratio` of at least `outage_min_workloads`
  workloads fail, AMOS does nothing and escalates once;
- block per workload after a failed pair of attempts, an inconclusive verification, a conflict with a
  person or a reverted fix (`workload_block_seconds`): incidents are skipped, a person was told;
- cooldown per workload after any change AMOS made (`workload_cooldown_seconds`): later incidents wait;
- dry-run mode, observe mode, GitOps/Helm-managed workloads (Argo CD, Flux, Helm: `core.k8s.gitops_managers`),
  protected workloads and an open circuit breaker: diagnosis and a proposal only, no change;
- the cluster-wide action budget (`actions_per_hour`): when it is used up the circuit breaker opens and
  stays open until a person resets it (ConfigMap `amos-circuit-breaker` in the state namespace: delete
  it, or set `data.state` to `closed`);
- approve mode: the fix is stored and applied only once a person approves it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from core import k8s
from core.config import Settings
from core.report import NamespaceOutage
from orchestrator.breaker import BREAKER_NAME
from orchestrator.modes import Mode
from orchestrator.outage import NamespaceHealth, Storm, is_outage
from orchestrator.records import BreakerState, WorkloadState
from tools import objects

MAX_NAMED = 8  # workloads named in a storm or outage reason


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


def _some(names: list[str], most: int = MAX_NAMED) -> str:
    """The first `most` names and how many more: a reason stays one readable line in a storm of 500."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


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
        shown = _some(storm.workloads)
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
        shown = _some(health.failing)
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
