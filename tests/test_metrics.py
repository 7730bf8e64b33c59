"""Metric names and meanings operators build alerts on: exposed on /metrics by prometheus_client's exporter,
counted once per event (an attempt, a restore), not once per report."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from core.models import FaultKind, Incident, ObjectRef
from core.report import ActionRecord, ActionStatus, AttemptRecord, IncidentReport, Outcome
from lab.cluster import free_port
from service import health
from service.metrics import DETECTION_BUCKETS, Metrics

NOW = datetime(2026, 1, 1, tzinfo=UTC)
WEB = ObjectRef(kind="Deployment", namespace="shop", name="web")


def report(
    outcome: Outcome,
    *,
    attempt: int = 1,
    attempts: list[AttemptRecord] | None = None,
    actions: list[ActionRecord] | None = None,
    rolled_back: bool = False,
) -> IncidentReport:
    incident = Incident(
        id="inc1", fingerprint="fp", kind=FaultKind.IMAGE_PULL, workload=WEB, first_seen=NOW, last_seen=NOW
    )
    return IncidentReport(
        incident=incident,
        outcome=outcome,
        attempt=attempt,
        max_attempts=2,
        actions=actions or [],
        attempts=attempts or [],
        rolled_back=rolled_back,
        model="offline:amos-rules",
        model_calls=3,
        tokens=100,
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=42),
    )


def applied(verb: str = "rollback") -> ActionRecord:
    return ActionRecord(verb=verb, target=WEB, summary=verb, status=ActionStatus.APPLIED)


def refused(verb: str = "scale") -> ActionRecord:
    return ActionRecord(verb=verb, target=WEB, summary=verb, status=ActionStatus.REFUSED, reason="policy")


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if found is None else found


def test_every_documented_metric_is_on_the_metrics_endpoint() -> None:
    metrics = Metrics()
    port = free_port()
    server = health.serve(port, metrics, list, host="127.0.0.1")
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    finally:
        server.shutdown()
    families = {family.name: family.type for family in text_string_to_metric_families(body)}
    expected = {
        "amos_build_info": "gauge",
        "amos_incidents": "counter",
        "amos_remediation_attempts": "counter",
        "amos_rollbacks": "counter",
        "amos_escalations": "counter",
        "amos_incidents_skipped": "counter",
        "amos_policy_refusals": "counter",
        "amos_detection_latency_seconds": "histogram",
        "amos_mttr_seconds": "histogram",
        "amos_open_incidents": "gauge",
        "amos_incidents_in_flight": "gauge",
        "amos_incidents_queued": "gauge",
        "amos_incidents_deferred": "gauge",
        "amos_proposals_pending": "gauge",
        "amos_model_calls": "counter",
        "amos_model_tokens": "counter",
        "amos_model_errors": "counter",
        "amos_model_latency_seconds": "histogram",
        "amos_report_deliveries": "counter",
        "amos_outbox_pending": "gauge",
        "amos_outbox_oldest_seconds": "gauge",
        "amos_watch_reconnects": "counter",
        "amos_api_errors": "counter",
        "amos_leader": "gauge",
        "amos_circuit_breaker_open": "gauge",
        "process_resident_memory_bytes": "gauge",
        "python_info": "gauge",
        "python_gc_collections": "counter",
    }
    assert {name: families.get(name) for name in expected} == expected
    assert "amos_watch_reconnects_total 0.0" in body
    assert 'amos_build_info{python="' in body and 'version="' in body


def test_detection_latency_buckets_reach_five_minutes() -> None:
    metrics = Metrics()
    metrics.detection_latency.observe(250)
    assert DETECTION_BUCKETS[-1] == 300
    assert value(metrics, "amos_detection_latency_seconds_bucket", le="300.0") == 1
    assert value(metrics, "amos_detection_latency_seconds_bucket", le="180.0") == 0


def test_an_attempt_and_a_restore_count_once_however_many_reports_repeat_them() -> None:
    metrics = Metrics()
    first = AttemptRecord(number=1, actions=[applied()], rolled_back=True)
    second = AttemptRecord(number=2, actions=[applied()])
    metrics.record_report(report(Outcome.ROLLED_BACK, attempts=[first]))
    metrics.record_report(report(Outcome.FIXED, attempt=2, attempts=[first, second]))
    metrics.record_report(report(Outcome.FIXED, attempt=2, attempts=[first, second]))  # a repeated report
    assert value(metrics, "amos_remediation_attempts_total", kind="ImagePullBackOff") == 2
    assert value(metrics, "amos_rollbacks_total") == 1
    assert value(metrics, "amos_incidents_total", kind="ImagePullBackOff", outcome="fixed") == 2
    assert value(metrics, "amos_mttr_seconds_count") == 2
    assert value(metrics, "amos_model_calls_total", model="offline:amos-rules") == 9


def test_a_report_without_an_applied_change_is_no_attempt() -> None:
    metrics = Metrics()
    metrics.record_report(report(Outcome.RECOMMENDED, actions=[refused("scale"), refused("scale")]))
    metrics.record_report(report(Outcome.ESCALATED))
    assert value(metrics, "amos_remediation_attempts_total", kind="ImagePullBackOff") == 0
    assert value(metrics, "amos_policy_refusals_total", verb="scale") == 2
    assert value(metrics, "amos_escalations_total", kind="ImagePullBackOff") == 1


def test_a_report_without_attempt_records_counts_its_own_actions() -> None:
    metrics = Metrics()
    metrics.record_report(report(Outcome.ROLLED_BACK, actions=[applied()], rolled_back=True))
    assert value(metrics, "amos_remediation_attempts_total", kind="ImagePullBackOff") == 1
    assert value(metrics, "amos_rollbacks_total") == 1


def test_deliveries_skips_model_requests_and_callbacks() -> None:
    metrics = Metrics()
    metrics.record_delivery("email", "delivered")
    metrics.record_delivery("slack", "permanent")
    metrics.record_skip("cooldown")
    metrics.record_model_request("gemini:gemini-3.5-flash", 1.5)
    metrics.record_model_request("gemini:gemini-3.5-flash", 60.0, error="timeout")
    reconnects = {"n": 0}
    metrics.watch_reconnects.set_function(lambda: reconnects["n"])
    reconnects["n"] = 3
    assert value(metrics, "amos_report_deliveries_total", channel="email", result="delivered") == 1
    assert value(metrics, "amos_report_deliveries_total", channel="slack", result="permanent") == 1
    assert value(metrics, "amos_incidents_skipped_total", reason="cooldown") == 1
    assert value(metrics, "amos_model_latency_seconds_count", model="gemini:gemini-3.5-flash") == 2
    assert value(metrics, "amos_model_errors_total", model="gemini:gemini-3.5-flash", error="timeout") == 1
    assert value(metrics, "amos_watch_reconnects_total") == 3
