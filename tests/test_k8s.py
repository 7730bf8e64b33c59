"""The shared Kubernetes vocabulary (`core.k8s`): kind aliases and the focus pod every layer reads the same way.

Who manages an object is tested with the guard rails (tests/test_orchestrator_guardrails.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from core import k8s
from core.models import FaultKind, Incident, ObjectRef

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WEB = ObjectRef(kind="Deployment", namespace="shop", name="web")


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
