"""The shared Kubernetes vocabulary (`core.k8s`): kind aliases, quantities and the focus pod every layer reads alike.

Who manages an object is tested with the guard rails (tests/test_orchestrator_guardrails.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from core import k8s
from core.models import FaultKind, Incident, ObjectRef

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WEB = ObjectRef(kind="Deployment", namespace="shop", name="web")


@pytest.mark.parametrize(
    ("text", "kind"),
    [("deploy", "Deployment"), ("deployments", "Deployment"), ("sts", "StatefulSet"), (" DaemonSets ", "DaemonSet")]
    + [("cj", "CronJob"), ("jobs", "Job"), ("pods", "Pod"), ("ReplicaSet", "ReplicaSet"), ("rs", "ReplicaSet")]
    + [("replicasets", "ReplicaSet"), ("po", "Pod"), ("cronjobs", "CronJob"), (" Service ", "Service")],
)
def test_kind_aliases(text: str, kind: str) -> None:
    assert k8s.canonical_kind(text) == kind


def test_a_short_name_is_what_kubectl_takes_and_round_trips_to_the_kind() -> None:
    assert [k8s.short_name(kind) for kind in ("Deployment", "StatefulSet", "CronJob", "Pod")] == [
        "deploy",
        "sts",
        "cronjob",
        "pod",
    ]
    assert all(k8s.canonical_kind(k8s.short_name(kind)) == kind for kind in k8s.READABLE_KINDS)


@pytest.mark.parametrize(
    ("text", "value"),
    [("128Mi", 128 * 1024**2), ("1Ki", 1024), ("1.5Gi", 3 * 1024**3 // 2), ("2Ei", 2 * 1024**6), ("1k", 1000)]
    + [("1M", 10**6), ("1G", 10**9), ("1E", 10**18), ("100m", Decimal("0.1")), ("5n", Decimal("5e-9"))]
    + [("3u", Decimal("3e-6")), ("1e3", 1000), ("1E-2", Decimal("0.01")), ("+1", 1), ("-2", -2), (".5", Decimal("0.5"))]
    + [("5.", 5), ("0", 0)],
)
def test_a_quantity_is_read_in_every_unit_the_api_server_takes(text: str, value: Decimal | int) -> None:
    assert k8s.parse_quantity(text) == value


@pytest.mark.parametrize(
    "text",
    ["1K", "1ki", "1mi", "1e3Mi", "1e", "NaN", "Infinity", " 1", "1 ", "1\n", "1_000", "0x10", "", ".", "Mi", "1Mii"],
)
def test_what_the_api_server_refuses_is_not_a_quantity(text: str) -> None:
    """The Python client alone reads `1K`, `NaN`, padded and underscored numbers and `1e3Mi`; the API server does not."""
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        k8s.parse_quantity(text)


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


def test_an_event_was_last_seen_at_its_series_newest_observation_else_its_newest_older_field() -> None:
    series = {"series": {"lastObservedTime": "2026-01-01T12:05:00.000000Z"}, "eventTime": "2026-01-01T12:00:00.000000Z"}
    assert k8s.event_time(series | {"lastTimestamp": None}) == "2026-01-01T12:05:00.000000Z"
    assert k8s.event_time({"lastTimestamp": "2026-01-01T12:03:00Z", "firstTimestamp": "2026-01-01T12:01:00Z"}) == (
        "2026-01-01T12:03:00Z"
    )
    assert k8s.event_time({"eventTime": "2026-01-01T12:00:00.000000Z"}) == "2026-01-01T12:00:00.000000Z"
    assert k8s.event_time({"metadata": {"creationTimestamp": "2026-01-01T11:59:00Z"}}) == "2026-01-01T11:59:00Z"
    assert k8s.event_time({}) is None
