"""Prometheus metrics: one registry for the process, so tests can read values without globals leaking."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 10, 30, 60)
_MTTR_BUCKETS = (10, 20, 30, 60, 120, 300, 600, 1800)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.incidents = Counter("amos_incidents", "Incidents handled, by fault kind and outcome",
                                 ["kind", "outcome"], registry=r)
        self.attempts = Counter("amos_remediation_attempts", "Remediation attempts started", ["kind"], registry=r)
        self.rollbacks = Counter("amos_rollbacks", "Snapshots restored after a failed fix", registry=r)
        self.escalations = Counter("amos_escalations", "Incidents handed to a human", ["kind"], registry=r)
        self.detection_latency = Histogram("amos_detection_latency_seconds", "Status change to incident emitted",
                                           buckets=_LATENCY_BUCKETS, registry=r)
        self.mttr = Histogram("amos_mttr_seconds", "Incident detected to verified fix", buckets=_MTTR_BUCKETS,
                              registry=r)
        self.model_calls = Counter("amos_model_calls", "Model requests made by agent sessions", ["model"],
                                   registry=r)
        self.model_tokens = Counter("amos_model_tokens", "Model tokens used by agent sessions", ["model"],
                                    registry=r)
        self.watch_reconnects = Gauge("amos_watch_reconnects", "Watch streams re-established since start",
                                      registry=r)
        self.leader = Gauge("amos_leader", "1 while this replica holds the leader lease", registry=r)
        self.open_incidents = Gauge("amos_open_incidents", "Incidents being worked on", registry=r)
