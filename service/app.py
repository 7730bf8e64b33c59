"""The AMOS service: watches feed the detector, the detector feeds the orchestrator, the leader acts.

Every replica watches and detects (so a standby is warm); only the replica holding
the Lease hands incidents to the orchestrator. Gaining the lease runs recovery of
unfinished remediations and picks up the incidents that are open right now.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from kubernetes import client

from core.config import Settings
from core.models import Incident, IncidentState
from core.report import IncidentReport, Outcome
from monitors.detector import FaultDetector
from monitors.watch import Watcher
from notifications import Mailer
from orchestrator.loop import Orchestrator
from service import health
from service.kube import connect
from service.leader import LeaderElector
from service.metrics import Metrics

log = logging.getLogger("amos.service")

SHUTDOWN_GRACE_SECONDS = 60.0


class AmosApp:
    def __init__(
        self,
        settings: Settings,
        api: client.ApiClient,
        *,
        metrics: Metrics | None = None,
        identity: str | None = None,
        on_report: Callable[[IncidentReport], None] | None = None,
        on_incident: Callable[[Incident], None] | None = None,
        serve_http: bool = True,
    ) -> None:
        self.settings = settings
        self.api = api
        self.metrics = metrics or Metrics()
        self._on_report = on_report
        self._on_incident = on_incident
        self._serve_http = serve_http
        self.orchestrator = Orchestrator(settings, api, Mailer(settings), on_report=self._reported, identity=identity)
        self.identity = self.orchestrator.identity
        self.detector = FaultDetector(settings, self._detected)
        self.watcher = Watcher(settings, api, self.detector)
        self.elector = LeaderElector(api, settings.store_namespace, settings.lease_name, self.identity,
                                     on_change=self._leadership_changed) if settings.leader_election else None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http: object | None = None
        self._orchestrating = False
        self.metrics.watch_reconnects.set_function(lambda: self.watcher.reconnects)

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.orchestrator.store.ensure_namespace()
        if self._serve_http:
            self._http = health.serve(self.settings.http_port, self.metrics, self.ready)
        self.watcher.start()
        if self.elector is None:
            self._leadership_changed(True)
        else:
            thread = threading.Thread(target=self.elector.run, args=(self._stop,), name="amos-leader", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("AMOS %s started (model: %s, dry run: %s)", self.identity, self.settings.resolved_provider().value,
                 self.settings.dry_run)

    def stop(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop taking incidents, finish or roll back in-flight work, then give the lease up."""
        log.info("stopping: finishing in-flight remediations (grace %.0f s)", grace_seconds)
        self.watcher.stop()
        self.orchestrator.stop(grace_seconds)
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        if self._http is not None:
            self._http.shutdown()  # type: ignore[attr-defined]

    def ready(self) -> bool:
        return self.watcher.wait_synced(0)

    @property
    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader.is_set()

    # ---- plumbing --------------------------------------------------------------------------
    def _detected(self, incident: Incident) -> None:
        if incident.state is IncidentState.OPEN and incident.detected_latency_seconds is not None:
            self.metrics.detection_latency.observe(incident.detected_latency_seconds)
        if self._on_incident:
            self._on_incident(incident)
        if self.is_leader:
            self.orchestrator.submit(incident)

    def _leadership_changed(self, leads: bool) -> None:
        self.metrics.leader.set(1 if leads else 0)
        if not leads:
            return
        if not self._orchestrating:  # first time we lead: recover (reports go to on_report), then take incidents
            self._orchestrating = True
            self.orchestrator.start()
        for incident in self.detector.open_incidents():
            self.orchestrator.submit(incident)

    def _reported(self, report: IncidentReport) -> None:
        kind = report.incident.kind.value
        self.metrics.incidents.labels(kind=kind, outcome=report.outcome.value).inc()
        self.metrics.attempts.labels(kind=kind).inc(report.attempt)
        if report.rolled_back:
            self.metrics.rollbacks.inc()
        if report.outcome is Outcome.ESCALATED:
            self.metrics.escalations.labels(kind=kind).inc()
        if report.outcome is Outcome.FIXED and report.finished_at is not None:
            self.metrics.mttr.observe((report.finished_at - report.incident.first_seen).total_seconds())
        if report.model:
            self.metrics.model_calls.labels(model=report.model).inc(report.model_calls)
            self.metrics.model_tokens.labels(model=report.model).inc(report.tokens)
        if self._on_report:
            self._on_report(report)


def run_service(settings: Settings) -> int:
    """`python main.py run`: until SIGTERM or Ctrl-C."""
    api = connect(settings.kubeconfig)
    app = AmosApp(settings, api)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    app.start()
    stop.wait()
    app.stop()
    return 0
