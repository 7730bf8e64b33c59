"""The shared Kubernetes vocabulary (`core.k8s`): every layer reads kinds, managers and focus pods the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core import k8s
from core.config import Settings
from core.models import FaultKind, Incident, ObjectRef
from orchestrator.guard_rules import GuardRule, GuardVerdict, decide
from orchestrator.records import BreakerState, WorkloadState
from tools import objects

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WEB = ObjectRef(kind="Deployment", namespace="shop", name="web")
HELM_LABELS = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "web"}


def workload(labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "labels": labels or {}, "annotations": annotations or {}},
        "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}}},
    }


def guard(obj: dict[str, Any]) -> Any:
    return decide(
        settings=Settings(),
        now=NOW,
        workload=obj,
        state=WorkloadState(workload=WEB),
        breaker=BreakerState(),
        budget_used=0,
        health=None,
    )


@pytest.mark.parametrize(
    ("labels", "annotations"),
    [(HELM_LABELS, {}), ({"app.kubernetes.io/managed-by": "helm"}, {}), ({}, {"meta.helm.sh/release-name": "web"})],
)
def test_a_helm_managed_object_is_managed_for_the_read_tools_and_the_guard_rails(
    labels: dict[str, str], annotations: dict[str, str]
) -> None:
    obj = workload(labels, annotations)
    assert objects.managed_by(obj) == ["Helm"]  # what get_owner_chain and describe tell the model
    decision = guard(obj)
    assert decision.verdict is GuardVerdict.PROPOSE and decision.rule is GuardRule.GITOPS
    assert "Helm" in decision.reason


def test_a_manager_that_syncs_nothing_is_reported_but_does_not_stop_a_fix() -> None:
    obj = workload({"app.kubernetes.io/managed-by": "Terraform"})
    assert k8s.gitops_managers(obj) == [] and objects.managed_by(obj) == ["Terraform"]
    assert guard(obj).verdict is GuardVerdict.PROCEED


def test_every_manager_is_named_once() -> None:
    obj = workload({"argocd.argoproj.io/instance": "shop", **HELM_LABELS}, {"argocd.argoproj.io/tracking-id": "shop:x"})
    assert objects.managed_by(obj) == ["Argo CD", "Helm"]
    assert "Argo CD and Helm" in guard(obj).reason


@pytest.mark.parametrize(
    ("text", "kind"),
    [("deploy", "Deployment"), ("deployments", "Deployment"), ("sts", "StatefulSet"), (" DaemonSets ", "DaemonSet")]
    + [("cj", "CronJob"), ("jobs", "Job"), ("pods", "Pod"), ("ReplicaSet", "ReplicaSet")],
)
def test_kind_aliases(text: str, kind: str) -> None:
    assert k8s.canonical_kind(text) == kind


def incident(*pods: str) -> Incident:
    affected = [ObjectRef(kind="Pod", namespace="shop", name=name) for name in pods]
    return Incident(
        id="i-1",
        fingerprint="f",
        kind=FaultKind.CRASH_LOOP,
        workload=WEB,
        affected=affected,
        first_seen=NOW,
        last_seen=NOW,
    )


def row(name: str, *, phase: str = "Running", restarts: int = 0, deleting: bool = False) -> dict[str, Any]:
    return {"name": name, "phase": phase, "restarts": restarts, "deleting": deleting}


def test_the_focus_pod_is_the_newest_live_pod_the_incident_names() -> None:
    pods = [row("web-a", restarts=3), row("web-b", restarts=2), row("web-c", restarts=1, deleting=True)]
    assert k8s.focus_pod(pods, incident("web-a", "web-b", "web-c")) == "web-b"  # web-c is going away


def test_without_a_named_pod_the_focus_is_the_newest_unhealthy_one_else_the_newest() -> None:
    pods = [row("web-a", restarts=4), row("web-b"), row("web-c", phase="Pending"), row("web-d")]
    assert k8s.focus_pod(pods, incident("web-gone")) == "web-c"
    assert k8s.focus_pod([row("web-a"), row("web-b")], None) == "web-b"


def test_with_no_pod_listed_the_focus_is_the_newest_named_one_and_terminating_pods_are_never_chosen() -> None:
    assert k8s.focus_pod([], incident("web-a", "web-b")) == "web-b"
    assert k8s.focus_pod([row("web-a", deleting=True)], incident("web-a")) is None
