"""Outage detection in the service reads the watch cache: an outage is decided with no list call per incident.

Three of four Deployments cannot schedule their pods; the service (watcher and orchestrator wired as
`AmosApp` wires them) escalates the namespace once and skips the other incidents, and none of those
decisions lists a workload kind through the API. The cache and the API listing agree on the namespace.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from core.config import Settings
from core.redaction import Redactor
from core.report import IncidentReport
from core.workload_health import HEALTH_KINDS, ListingState, WorkloadListing
from lab.workloads import create, deployment, rollout_complete, wait_for
from orchestrator.outage import namespace_health
from orchestrator.workload_listing import ApiWorkloads
from service.app import AmosApp
from service.metrics import Metrics
from service.wiring import build_orchestrator
from tools.cluster import ClusterAccess

pytestmark = pytest.mark.lab

UNSCHEDULABLE_CPU = "1000"


class ListCalls:
    """Counts `list_objects` calls of the kinds outage detection reads, on one ClusterAccess."""

    def __init__(self, access: ClusterAccess) -> None:
        self.kinds: list[str] = []
        self._lock = threading.Lock()
        listing = access.list_objects

        def counted(kind: str, namespace: str, **selectors: Any) -> list[dict[str, Any]]:
            if kind in HEALTH_KINDS:
                with self._lock:
                    self.kinds.append(kind)
            return listing(kind, namespace, **selectors)

        access.list_objects = counted  # type: ignore[method-assign]


def test_the_service_decides_an_outage_from_the_watch_cache_without_listing_per_incident(
    amos_api: client.ApiClient, api_client: client.ApiClient, namespace: str, make_settings: Callable[..., Settings]
) -> None:
    create(api_client, namespace, deployment("ok"))
    wait_for(lambda: rollout_complete(api_client, namespace, "ok"), timeout=60, what="the healthy Deployment")
    for name in ("a", "b", "c"):
        create(api_client, namespace, deployment(name, cpu_request=UNSCHEDULABLE_CPU))
    settings = make_settings(outage_min_workloads=4, outage_failing_ratio=0.5, pending_grace_seconds=1.0)
    reports: list[IncidentReport] = []
    metrics = Metrics()
    app = AmosApp(settings, amos_api, metrics=metrics, on_report=reports.append, serve_http=False)
    calls = ListCalls(app.orchestrator.guardrails.access)

    def skipped() -> float:
        return metrics.registry.get_sample_value("amos_incidents_skipped_total", {"reason": "outage"}) or 0.0

    app.start()
    try:
        report = wait_for(
            lambda: next((r for r in reports if r.outage is not None), None), timeout=90, what="the outage report"
        )
        wait_for(lambda: skipped() >= 2, timeout=60, what="the other incidents skipped as part of the outage")
        assert report.outage is not None and report.outage.namespace == namespace
        assert report.outage.total_workloads == 4
        assert calls.kinds == [], "outage detection listed workloads through the API"
        cached = app.watcher.workloads(namespace)
        assert cached.state is ListingState.LISTED
        listed = ApiWorkloads(ClusterAccess(api_client, settings, Redactor()))
        from_api = listed.workloads(namespace)
        assert namespace_health(namespace, cached.workloads) == namespace_health(namespace, from_api.workloads)
        assert namespace_health(namespace, cached.workloads).failing == [
            f"Deployment/{name}" for name in ("a", "b", "c")
        ]
    finally:
        app.stop(grace_seconds=10)


class Unreadable:
    """A source the role may not read (as a watcher answers when its Deployment stream is forbidden)."""

    def workloads(self, namespace: str) -> WorkloadListing:
        return WorkloadListing(namespace=namespace, state=ListingState.UNREADABLE, reason="forbidden")


def test_an_unreadable_namespace_skips_outage_detection_saying_so_once(
    amos_api: client.ApiClient, namespace: str, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    orchestrator = build_orchestrator(make_settings(), amos_api, None, workload_health=Unreadable())
    calls = ListCalls(orchestrator.guardrails.access)
    with caplog.at_level(logging.WARNING, logger="orchestrator.guardrails"):
        assert orchestrator.guardrails.health(namespace, []) is None
        assert orchestrator.guardrails.health(namespace, []) is None
    skipped = [r for r in caplog.records if "outage detection skipped" in r.getMessage()]
    assert len(skipped) == 1 and namespace in skipped[0].getMessage()
    assert calls.kinds == []


def test_without_a_watch_cache_each_incident_lists_the_namespace(
    amos_api: client.ApiClient, api_client: client.ApiClient, namespace: str, make_settings: Callable[..., Settings]
) -> None:
    create(api_client, namespace, deployment("a", cpu_request=UNSCHEDULABLE_CPU))
    orchestrator = build_orchestrator(make_settings(), amos_api, None)
    calls = ListCalls(orchestrator.guardrails.access)
    health = orchestrator.guardrails.health(namespace, [])
    assert health is not None and health.failing == ["Deployment/a"]
    assert sorted(calls.kinds) == sorted(HEALTH_KINDS)
