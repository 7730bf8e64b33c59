"""Prometheus metrics on one registry per process (tests build their own), exported by prometheus_client.

Names follow Prometheus conventions: counters end in `_total` (prometheus_client adds it),
durations are in seconds. What each metric means is in the README's metrics reference.
Values derived from an incident report are counted in one place, `record_report`.
"""

from __future__ import annotations

import platform
import tomllib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from core.report import ActionStatus, AttemptRecord, IncidentReport, Outcome

DETECTION_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 180, 300)
MTTR_BUCKETS = (10, 20, 30, 60, 120, 300, 600, 1800, 3600)
COUNTED_ATTEMPTS_KEPT = 10_000  # (incident, attempt) keys remembered so a repeated report counts once
MODEL_LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120)


class CallbackCounter(Collector):
    """A counter whose value another object already keeps (the watcher's reconnect count, say)."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self._name, self._documentation = name, documentation
        self._function: Callable[[], float] = lambda: 0.0
        registry.register(self)

    def set_function(self, function: Callable[[], float]) -> None:
        self._function = function

    def describe(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(self._name, self._documentation)]

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self._name, self._documentation, value=float(self._function()))


def _version() -> str:
    """The installed package's version, else pyproject.toml's (the image runs from a plain copy)."""
    from importlib import metadata

    try:
        return metadata.version("amos")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge(
            "amos_build_info", "Always 1; the labels say which AMOS runs", ["version", "python"], registry=r
        )
        self.build_info.labels(version=_version(), python=platform.python_version()).set(1)
        # --- incidents and their outcomes
        self.incidents = Counter(
            "amos_incidents", "Incident reports, by fault kind and outcome", ["kind", "outcome"], registry=r
        )
        self.attempts = Counter(
            "amos_remediation_attempts", "Remediation attempts that applied a change", ["kind"], registry=r
        )
        self.rollbacks = Counter("amos_rollbacks", "Snapshots restored after a fix that did not help", registry=r)
        self.escalations = Counter("amos_escalations", "Incidents handed to a human", ["kind"], registry=r)
        self.skipped = Counter(
            "amos_incidents_skipped", "Incidents not worked on, by guard rail", ["reason"], registry=r
        )
        self.policy_refusals = Counter(
            "amos_policy_refusals", "Proposed actions the policy guard refused", ["verb"], registry=r
        )
        self.detection_latency = Histogram(
            "amos_detection_latency_seconds", "Status change to incident emitted", buckets=DETECTION_BUCKETS, registry=r
        )
        self.mttr = Histogram(
            "amos_mttr_seconds", "Incident first seen to verified fix", buckets=MTTR_BUCKETS, registry=r
        )
        self.open_incidents = Gauge("amos_open_incidents", "Incidents detected and not resolved yet", registry=r)
        self.incidents_in_flight = Gauge("amos_incidents_in_flight", "Incidents being worked on right now", registry=r)
        self.incidents_queued = Gauge(
            "amos_incidents_queued", "Incidents waiting for a worker or for the run on their workload", registry=r
        )
        self.incidents_deferred = Gauge(
            "amos_incidents_deferred", "Incidents held until their workload's cooldown ends", registry=r
        )
        self.proposals_pending = Gauge("amos_proposals_pending", "Proposed changes waiting for a person", registry=r)
        # --- model
        self.model_calls = Counter("amos_model_calls", "Model requests made by agent sessions", ["model"], registry=r)
        self.model_tokens = Counter("amos_model_tokens", "Model tokens used by agent sessions", ["model"], registry=r)
        self.model_errors = Counter(
            "amos_model_errors",
            "Model requests or sessions that failed, by error class",
            ["model", "error"],
            registry=r,
        )
        self.model_latency = Histogram(
            "amos_model_latency_seconds",
            "Duration of one model request",
            ["model"],
            buckets=MODEL_LATENCY_BUCKETS,
            registry=r,
        )
        # --- notifications
        self.deliveries = Counter(
            "amos_report_deliveries", "Report deliveries, by channel and result", ["channel", "result"], registry=r
        )
        self.outbox_pending = Gauge("amos_outbox_pending", "Notifications waiting to be delivered", registry=r)
        self.outbox_oldest = Gauge(
            "amos_outbox_oldest_seconds", "Age of the oldest undelivered notification", registry=r
        )
        # --- service
        self.watch_reconnects = CallbackCounter(
            "amos_watch_reconnects", "Watch streams lost and re-established since start", r
        )
        self.api_errors = Counter(
            "amos_api_errors",
            "Kubernetes API calls that failed, by operation and status",
            ["operation", "status"],
            registry=r,
        )
        self.leader = Gauge("amos_leader", "1 while this replica holds the leader lease", registry=r)
        self.circuit_open = Gauge(
            "amos_circuit_breaker_open", "1 while the circuit breaker stops every change", registry=r
        )
        self._applied: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._restored: OrderedDict[tuple[str, int], None] = OrderedDict()

    def record_report(self, report: IncidentReport) -> None:
        """Everything one incident report counts: its outcome, refusals and model use; and each attempt that
        applied a change and each restore once, however many reports repeat that attempt."""
        kind = report.incident.kind.value
        self.incidents.labels(kind=kind, outcome=report.outcome.value).inc()
        attempts = report.attempts or [
            AttemptRecord(number=report.attempt, actions=report.actions, rolled_back=report.rolled_back)
        ]
        for attempt in attempts:
            key = (report.incident.id, attempt.number)
            applied = any(action.status is ActionStatus.APPLIED for action in attempt.actions)
            if applied and self._first_time(self._applied, key):
                self.attempts.labels(kind=kind).inc()
            if attempt.rolled_back and self._first_time(self._restored, key):
                self.rollbacks.inc()
        for action in report.actions:
            if action.status is ActionStatus.REFUSED:
                self.policy_refusals.labels(verb=action.verb).inc()
        if report.outcome in (Outcome.ESCALATED, Outcome.INCONCLUSIVE):
            self.escalations.labels(kind=kind).inc()
        if report.outcome is Outcome.FIXED:
            self.mttr.observe(max(0.0, (report.finished_at - report.incident.first_seen).total_seconds()))
        if report.model:
            self.model_calls.labels(model=report.model).inc(report.model_calls)
            self.model_tokens.labels(model=report.model).inc(report.tokens)

    @staticmethod
    def _first_time(seen: OrderedDict[tuple[str, int], None], key: tuple[str, int]) -> bool:
        if key in seen:
            return False
        seen[key] = None
        if len(seen) > COUNTED_ATTEMPTS_KEPT:
            seen.popitem(last=False)
        return True

    def record_delivery(self, channel: str, result: str) -> None:
        """One delivery attempt of a report through `channel` (email, slack, webhook); `result` is the outbox's
        status: delivered, transient (retried), permanent (given up) or expired (retried past the deadline)."""
        self.deliveries.labels(channel=channel, result=result).inc()

    def record_skip(self, reason: str) -> None:
        """An incident a guard rail set aside (cooldown, outage, blocked, budget, ...)."""
        self.skipped.labels(reason=reason).inc()

    def record_model_request(self, model: str, seconds: float, error: str | None = None) -> None:
        """One model request: its duration, and its error class (`timeout`, `http_429`, ...) when it failed."""
        self.model_latency.labels(model=model).observe(seconds)
        if error is not None:
            self.model_errors.labels(model=model, error=error).inc()

    def record_api_error(self, operation: str, status: int | None) -> None:
        """One failed Kubernetes API call (`read_namespaced_config_map`, ...); status "none": no answer in time."""
        self.api_errors.labels(operation=operation, status=str(status or "none")).inc()
