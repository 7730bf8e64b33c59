"""Guard-rail decisions and the judge's readings, as pure functions with an injected clock (no cluster)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core import k8s
from core.actions import Rollback, SetImage
from core.config import Settings
from core.models import FaultKind, Incident, ObjectRef
from core.workload_health import WorkloadHealth
from orchestrator.assessment import Baseline, Health, assess, broken_guarantees, pod_signals
from orchestrator.fencing import Fence, FencedGuard
from orchestrator.guard_rules import GuardRule, GuardVerdict, decide
from orchestrator.guardrails import RevertStatus, check_revert, template_hash
from orchestrator.modes import Mode
from orchestrator.outage import Storm, is_outage, namespace_health
from orchestrator.records import BreakerState, FixWatch, Ledger, WorkloadState
from tools import objects
from tools.policy import ActionBudget, IncidentScope, WorkloadHistory

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WEB = ObjectRef(kind="Deployment", namespace="shop", name="web")


def deployment(
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    image: str = "shop/web:1.0",
    replicas: int = 2,
    ready: int = 2,
    generation: int = 3,
    memory: str | None = "128Mi",
    probe: bool = True,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image}
    if memory:
        container["resources"] = {"limits": {"memory": memory}}
    if probe:
        container["readinessProbe"] = {"httpGet": {"path": "/ready", "port": 8080}}
    return {
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "d-1",
            "generation": generation,
            "labels": labels or {},
            "annotations": {"deployment.kubernetes.io/revision": "2", **(annotations or {})},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container]}},
        },
        "status": {
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


def seen(objects: list[dict[str, Any]]) -> list[WorkloadHealth]:
    """The workloads as outage detection reads them (what the API listing gives it)."""
    return [WorkloadHealth.from_api(obj) for obj in objects]


# A ReplicaSet the Deployment controls (controller owner reference, its labels): revision 1 ran shop/web:1.0.
HISTORY_RS: dict[str, Any] = {
    "kind": "ReplicaSet",
    "metadata": {
        "name": "web-1",
        "labels": {"app": "web"},
        "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": "d-1", "controller": True}],
        "annotations": {"deployment.kubernetes.io/revision": "1"},
    },
    "spec": {
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "shop/web:1.0"}]},
        }
    },
}


def rules(
    obj: dict[str, Any] | None = None,
    *,
    state: WorkloadState | None = None,
    breaker: BreakerState | None = None,
    used: int = 0,
    failing: int = 0,
    total: int = 1,
    now: datetime = NOW,
    **settings: Any,
) -> Any:
    values: dict[str, Any] = {
        "workload_cooldown_seconds": 300,
        "workload_block_seconds": 3600,
        "actions_per_hour": 10,
        "outage_failing_ratio": 0.5,
        "outage_min_workloads": 4,
    }
    health = namespace_health(
        "shop", seen([deployment(ready=0) for _ in range(failing)] + [deployment() for _ in range(total - failing)])
    )
    return decide(
        settings=Settings(**(values | settings)),
        now=now,
        workload=deployment() if obj is None else obj,
        state=state or WorkloadState(workload=WEB),
        breaker=breaker or BreakerState(),
        budget_used=used,
        health=health,
    )


def test_a_healthy_situation_proceeds() -> None:
    decision = rules()
    assert decision.verdict is GuardVerdict.PROCEED and decision.rule == "ok"


def test_cooldown_defers_until_it_ends_and_then_lets_through() -> None:
    state = WorkloadState(workload=WEB, last_action_at=NOW - timedelta(seconds=120))
    decision = rules(state=state)
    assert decision.verdict is GuardVerdict.DEFER and decision.rule == "cooldown"
    assert decision.retry_at == NOW + timedelta(seconds=180)
    assert rules(state=state, now=NOW + timedelta(seconds=181)).verdict is GuardVerdict.PROCEED


def test_block_after_a_failed_pair_skips_for_an_hour() -> None:
    state = WorkloadState(workload=WEB, blocked_until=NOW + timedelta(minutes=59), block_reason="2 attempts failed")
    decision = rules(state=state)
    assert decision.verdict is GuardVerdict.SKIP and decision.rule == "blocked"
    assert "2 attempts failed" in decision.reason
    assert rules(state=state, now=NOW + timedelta(hours=1)).verdict is GuardVerdict.PROCEED


def test_budget_used_up_means_proposals_only() -> None:
    assert rules(used=9).verdict is GuardVerdict.PROCEED
    decision = rules(used=10)
    assert decision.verdict is GuardVerdict.PROPOSE and decision.rule == "budget"


def test_an_open_breaker_stays_open_whatever_the_budget_says() -> None:
    breaker = BreakerState(state="open", reason="budget used up", opened_at=NOW - timedelta(hours=5))
    decision = rules(breaker=breaker, used=0)
    assert decision.verdict is GuardVerdict.PROPOSE and decision.rule == "breaker"
    assert "amos-circuit-breaker" in decision.reason


@pytest.mark.parametrize(
    ("failing", "total", "outage"),
    [(2, 4, True), (3, 4, True), (1, 4, False), (3, 3, False), (5, 10, True), (4, 10, False)],
)
def test_outage_needs_enough_workloads_and_enough_failing(failing: int, total: int, outage: bool) -> None:
    decision = rules(failing=failing, total=total)
    assert (decision.verdict is GuardVerdict.ESCALATE and decision.rule == "outage") is outage


def test_outage_wins_over_cooldown_and_block() -> None:
    state = WorkloadState(workload=WEB, blocked_until=NOW + timedelta(hours=1), last_action_at=NOW)
    assert rules(state=state, failing=4, total=4).rule == "outage"


def test_namespace_health_ignores_scaled_to_zero_and_counts_failed_jobs() -> None:
    job = {
        "kind": "Job",
        "metadata": {"name": "batch"},
        "status": {"conditions": [{"type": "Failed", "status": "True"}]},
    }
    stuck = deployment()
    stuck["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]
    health = namespace_health("shop", seen([deployment(replicas=0, ready=0), deployment(), job, stuck]))
    assert health.total == 3 and health.failing == ["Deployment/web", "Job/batch"]
    assert not is_outage(health, Settings(outage_min_workloads=4))
    assert is_outage(health, Settings(outage_min_workloads=3, outage_failing_ratio=0.6))


@pytest.mark.parametrize(
    ("labels", "annotations", "manager"),
    [
        ({}, {"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"}, "Argo CD"),
        ({"argocd.argoproj.io/instance": "shop"}, {}, "Argo CD"),
        ({"kustomize.toolkit.fluxcd.io/name": "apps"}, {}, "Flux (Kustomization)"),
        ({"helm.toolkit.fluxcd.io/name": "web"}, {}, "Flux (HelmRelease)"),
        ({"app.kubernetes.io/instance": "web", "app.kubernetes.io/managed-by": "Helm"}, {}, "Helm"),
        ({"app.kubernetes.io/managed-by": "Helm"}, {}, "Helm"),
        ({}, {"meta.helm.sh/release-name": "web"}, "Helm"),
        ({"app.kubernetes.io/instance": "web"}, {}, None),
        ({"app.kubernetes.io/managed-by": "kubectl"}, {}, None),
    ],
)
def test_gitops_ownership_means_proposals_only(
    labels: dict[str, str], annotations: dict[str, str], manager: str | None
) -> None:
    obj = deployment(labels=labels, annotations=annotations)
    assert k8s.gitops_managers(obj) == ([manager] if manager else [])
    if manager is not None:
        assert manager in objects.managed_by(obj)  # what the read tools tell the model
    decision = rules(obj)
    if manager is None:
        assert decision.verdict is GuardVerdict.PROCEED
    else:
        assert decision.verdict is GuardVerdict.PROPOSE and decision.rule == "gitops" and manager in decision.reason


HELM_LABELS = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "web"}


@pytest.mark.parametrize(
    ("labels", "annotations"),
    [(HELM_LABELS, {}), ({"app.kubernetes.io/managed-by": "helm"}, {}), ({}, {"meta.helm.sh/release-name": "web"})],
)
def test_a_helm_managed_workload_is_managed_for_the_read_tools_and_the_guard_rails(
    labels: dict[str, str], annotations: dict[str, str]
) -> None:
    obj = deployment(labels=labels, annotations=annotations)
    assert objects.managed_by(obj) == ["Helm"]  # what get_owner_chain and describe tell the model
    decision = rules(obj)
    assert decision.verdict is GuardVerdict.PROPOSE and decision.rule is GuardRule.GITOPS
    assert "Helm" in decision.reason


def test_a_manager_that_syncs_nothing_is_reported_but_does_not_stop_a_fix() -> None:
    obj = deployment(labels={"app.kubernetes.io/managed-by": "Terraform"})
    assert k8s.gitops_managers(obj) == [] and objects.managed_by(obj) == ["Terraform"]
    assert rules(obj).verdict is GuardVerdict.PROCEED


def test_every_manager_is_named_once() -> None:
    obj = deployment(
        labels={"argocd.argoproj.io/instance": "shop", **HELM_LABELS},
        annotations={"argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/web"},
    )
    assert objects.managed_by(obj) == ["Argo CD", "Helm"]
    assert "Argo CD and Helm" in rules(obj).reason


def test_dry_run_protected_ignored_and_gone() -> None:
    assert rules(dry_run=True).rule == "dry_run"
    assert rules(deployment(labels={"amos.io/protected": "true"})).rule == "protected"
    assert rules(deployment(annotations={"amos.io/ignore": "true"})).verdict is GuardVerdict.SKIP
    missing = decide(
        settings=Settings(),
        now=NOW,
        workload=None,
        state=WorkloadState(workload=WEB),
        breaker=BreakerState(),
        budget_used=0,
        health=None,
    )
    assert missing.verdict is GuardVerdict.SKIP and missing.rule == "gone"


def test_ledger_attempts_expire_after_the_block_period() -> None:
    ledger = Ledger(fingerprint="f", attempts=2, last_attempt_at=NOW)
    assert ledger.spent(NOW + timedelta(minutes=59), 3600) == 2
    assert ledger.spent(NOW + timedelta(minutes=61), 3600) == 0


def test_a_reverted_fix_is_told_apart_from_one_that_holds_or_was_superseded() -> None:
    before, fixed, other = deployment(image="shop/web:2.0-missing"), deployment(), deployment(image="shop/web:3.0")
    incident = Incident(
        id="i1", fingerprint="f", kind=FaultKind.IMAGE_PULL, workload=WEB, first_seen=NOW, last_seen=NOW
    )
    watch = FixWatch(
        incident=incident, fixed_at=NOW, before_hash=template_hash(before), after_hash=template_hash(fixed)
    )
    status_only = copy.deepcopy(fixed)
    status_only["status"]["readyReplicas"] = 0
    status_only["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "9"
    assert check_revert(watch, status_only, NOW + timedelta(minutes=1)) is RevertStatus.HOLDING
    assert check_revert(watch, before, NOW + timedelta(minutes=1)) is RevertStatus.REVERTED
    assert check_revert(watch, other, NOW + timedelta(minutes=1)) is RevertStatus.SUPERSEDED
    assert check_revert(watch, None, NOW) is RevertStatus.GONE
    assert check_revert(watch, fixed, NOW + timedelta(hours=5)) is RevertStatus.EXPIRED


# --- the judge's readings -----------------------------------------------------------------------------------


def test_guarantees_scaled_down_probe_and_limit_removed() -> None:
    baseline = Baseline.of(WEB, deployment(replicas=3))
    assert broken_guarantees(baseline, deployment(replicas=3)) == []
    assert broken_guarantees(baseline, deployment(replicas=0)) == ["the Deployment was scaled to 0"]
    assert "scaled down from 3 to 2" in broken_guarantees(baseline, deployment(replicas=2))[0]
    assert broken_guarantees(baseline, deployment(replicas=3, probe=False)) == [
        "the readinessProbe of container app was removed"
    ]
    assert broken_guarantees(baseline, deployment(replicas=3, memory=None)) == [
        "the memory limit of container app was removed"
    ]
    assert broken_guarantees(baseline, None) == ["Deployment/web no longer exists"]


def _pod(
    name: str, *, ready: bool = True, restarts: int = 0, waiting: str | None = None, last: dict[str, Any] | None = None
) -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {"name": name, "uid": name, "ownerReferences": [{"uid": "rs-2", "controller": True}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "app", "restartCount": restarts, "state": state, "lastState": last or {}}],
        },
    }


RS = [
    {
        "metadata": {
            "name": "web-2",
            "uid": "rs-2",
            "ownerReferences": [{"uid": "d-1"}],
            "annotations": {"deployment.kubernetes.io/revision": "2"},
        }
    }
]


def test_assess_healthy_failing_progressing_and_broken() -> None:
    baseline = Baseline.of(WEB, deployment())
    restarts: dict[str, int] = {}
    healthy = assess(baseline, deployment(), RS, [_pod("a"), _pod("b")], NOW, restarts)
    assert healthy.health is Health.HEALTHY
    failing = assess(
        baseline,
        deployment(ready=1),
        RS,
        [_pod("a"), _pod("b", ready=False, waiting="CrashLoopBackOff")],
        NOW,
        restarts,
    )
    assert failing.health is Health.FAILING and "CrashLoopBackOff" in failing.reasons[0]
    progressing = assess(baseline, deployment(ready=1), RS, [_pod("a"), _pod("b", ready=False)], NOW, restarts)
    assert progressing.health is Health.PROGRESSING
    assert assess(baseline, deployment(replicas=0), RS, [], NOW, restarts).health is Health.BROKEN
    lagging = deployment()
    lagging["status"]["observedGeneration"] = 2
    assert assess(baseline, lagging, RS, [_pod("a"), _pod("b")], NOW, restarts).health is Health.PROGRESSING


def test_a_restart_or_an_oom_kill_during_verification_is_a_fault_signal() -> None:
    restarts: dict[str, int] = {}
    assert pod_signals(_pod("a", restarts=4), NOW, restarts) == []  # old restarts are history
    assert "restarted 1 time(s)" in pod_signals(_pod("a", restarts=5), NOW, restarts)[0]
    oom = {
        "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": (NOW + timedelta(seconds=5)).isoformat()}
    }
    assert any("OOMKilled" in s for s in pod_signals(_pod("b", last=oom), NOW, {}))
    old_oom = {
        "terminated": {"reason": "OOMKilled", "exitCode": 137, "finishedAt": (NOW - timedelta(minutes=5)).isoformat()}
    }
    assert pod_signals(_pod("c", last=old_oom), NOW, {}) == []


# --- the generation fence -------------------------------------------------------------------------------------


def test_the_fence_refuses_a_write_on_a_spec_someone_else_changed_after_the_snapshot() -> None:
    settings = Settings()
    fence = Fence(3)
    guard = FencedGuard(
        settings, IncidentScope.of(WEB), budget=ActionBudget(10), fence=fence, still_leader=lambda: True
    )
    target = deployment(image="shop/web:2.0-missing", generation=3)
    history_rs = [HISTORY_RS]
    history = WorkloadHistory(workload=target, replicasets=history_rs)
    action = Rollback(namespace="shop", name="web", to_revision=1)
    assert guard.check(action, target, history).allowed
    edited = deployment(image="shop/web:2.0-missing", generation=4)
    refused = guard.check(action, edited, WorkloadHistory(workload=edited, replicasets=history_rs))
    assert not refused.allowed and "changed by someone else" in refused.reason
    fence.advance(4)  # AMOS's own write produced generation 4
    assert guard.check(
        SetImage(namespace="shop", name="web", container="app", image="shop/web:1.0"),
        edited,
        WorkloadHistory(workload=edited, replicasets=history_rs),
    ).allowed


def test_a_replica_that_lost_the_lease_writes_nothing_and_a_failed_change_is_not_repeated() -> None:
    settings = Settings()
    leads = {"now": True}
    target = deployment(image="shop/web:2.0-missing", generation=3)
    history_rs = [HISTORY_RS]
    history = WorkloadHistory(workload=target, replicasets=history_rs)
    rollback = Rollback(namespace="shop", name="web", to_revision=1)
    guard = FencedGuard(
        settings,
        IncidentScope.of(WEB),
        budget=ActionBudget(10),
        fence=Fence(3),
        still_leader=lambda: leads["now"],
        failed_actions=frozenset({rollback.summary()}),
    )
    repeated = guard.check(rollback, target, history)
    assert not repeated.allowed and "did not hold" in repeated.reason
    other = SetImage(namespace="shop", name="web", container="app", image="shop/web:1.0")
    assert guard.check(other, target, history).allowed
    leads["now"] = False
    lost = guard.check(other, target, history)
    assert not lost.allowed and "Lease" in lost.reason
    assert not guard.check_restore(target).allowed


# --- outage from open incidents, the storm rule -------------------------------------------------------


def test_workloads_with_an_open_incident_count_as_failing_even_while_old_pods_still_serve() -> None:
    healthy = [deployment() for _ in range(4)]
    for index, obj in enumerate(healthy):
        obj["metadata"]["name"] = f"web-{index}"
    health = namespace_health("shop", seen(healthy), faulty=["Deployment/web-0", "Deployment/web-1"])
    assert health.total == 4 and health.failing == ["Deployment/web-0", "Deployment/web-1"]
    assert is_outage(health, Settings(outage_min_workloads=4, outage_failing_ratio=0.5))
    assert not is_outage(namespace_health("shop", seen(healthy)), Settings(outage_min_workloads=4))


def test_many_workloads_breaking_cluster_wide_at_once_is_a_storm_that_stops_acting() -> None:
    broken = [f"Deployment/app-{i} -n team-{i}" for i in range(12)]
    values: dict[str, Any] = {"storm_min_workloads": 10}
    decision = decide(
        settings=Settings(**values),
        now=NOW,
        workload=deployment(),
        state=WorkloadState(workload=WEB),
        breaker=BreakerState(),
        budget_used=0,
        health=None,
        storm=Storm(workloads=broken, window_seconds=600),
    )
    assert decision.verdict is GuardVerdict.ESCALATE and decision.rule is GuardRule.STORM
    assert "12 workloads" in decision.reason and "and 4 more" in decision.reason
    calm = decide(
        settings=Settings(**values),
        now=NOW,
        workload=deployment(),
        state=WorkloadState(workload=WEB),
        breaker=BreakerState(),
        budget_used=0,
        health=None,
        storm=Storm(workloads=broken[:9], window_seconds=600),
    )
    assert calm.verdict is GuardVerdict.PROCEED


def test_observe_and_approve_modes_never_change_anything_by_themselves() -> None:
    common: dict[str, Any] = {
        "settings": Settings(),
        "now": NOW,
        "workload": deployment(),
        "state": WorkloadState(workload=WEB),
        "breaker": BreakerState(),
        "budget_used": 0,
        "health": None,
    }
    assert decide(**common, mode=Mode.OBSERVE).verdict is GuardVerdict.PROPOSE
    assert decide(**common, mode=Mode.APPROVE).verdict is GuardVerdict.APPROVE
    assert decide(**common, mode=Mode.AUTO).verdict is GuardVerdict.PROCEED
    open_breaker = BreakerState(state="open")
    assert decide(**(common | {"breaker": open_breaker}), mode=Mode.APPROVE).verdict is GuardVerdict.PROPOSE
