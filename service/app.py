"""The AMOS service: watches feed the detector, the detector feeds the orchestrator, the leader acts.

Every replica watches and detects (so a standby is warm); only the replica holding
the Lease hands incidents to the orchestrator. Gaining the lease runs recovery of
unfinished remediations (on its own thread: renewals never wait for it) and picks up the incidents
that are open right now. Losing it stops all acting at once (writes are fenced by the lease), and
`run` exits non-zero so Kubernetes restarts the pod as a clean standby, as client-go users do.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

from kubernetes import client

from core import api_errors
from core.config import Settings
from core.models import Incident, IncidentState
from core.redaction import Redactor
from core.report import IncidentReport
from monitors.detector import FaultDetector
from monitors.watch import WATCH_TIMEOUT_SECONDS, Watcher
from notifications.outbox import Outbox
from orchestrator.events import replica_identity
from service import health
from service.api_error_log import ApiErrorLog
from service.check import start_allowed
from service.exitcodes import ExitCode
from service.healthy_marks import HealthyMarks
from service.kube import connect
from service.leader import LeaderElector
from service.metrics import Metrics
from service.wiring import build_orchestrator

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
        redactor: Redactor | None = None,
        watch_timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
    ) -> None:
        """`watch_timeout_seconds`: how long each watch request lasts (a watch silent for a few of them is stalled)."""
        self.settings = settings
        self.api = api
        self.metrics = metrics or Metrics()
        self._on_report = on_report
        self._on_incident = on_incident
        self._serve_http = serve_http
        self.identity = identity or replica_identity()
        self.elector = (
            LeaderElector(
                api, settings.store_namespace, settings.lease_name, self.identity, on_change=self._leadership_changed
            )
            if settings.leader_election
            else None
        )
        elector = self.elector
        redactor = redactor or Redactor()
        api_errors.attach(api, ApiErrorLog(self.metrics, redactor))
        self.outbox = Outbox.from_settings(
            api, settings, is_leader=lambda: self.is_leader, identity=self.identity, redactor=redactor
        )
        self.outbox.on_result = self.metrics.record_delivery
        self.detector = FaultDetector(settings, self._detected)
        self.watcher = Watcher(  # hands healthy revisions to `healthy_marks`, built with the orchestrator below
            settings,
            api,
            self.detector,
            on_healthy=lambda revision: self.healthy_marks(revision),
            watch_timeout_seconds=watch_timeout_seconds,
        )
        self.orchestrator = build_orchestrator(
            settings,
            api,
            self.outbox,
            on_report=self._reported,
            identity=self.identity,
            redactor=redactor,
            on_skip=self.metrics.record_skip,
            still_leader=elector.still_leads if elector is not None else lambda: True,
            term=(lambda: elector.term) if elector is not None else lambda: 0,
            open_incidents=self.detector.open_incidents,
            workload_health=self.watcher,  # outage detection reads the watch cache: no API call per incident
        )
        self.healthy_marks = HealthyMarks(self.orchestrator.steps.known_good, lambda: self.is_leader)
        self.lost_lease = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._http: object | None = None
        self._orchestrating = False
        self.metrics.watch_reconnects.set_function(lambda: self.watcher.reconnects)
        self.metrics.open_incidents.set_function(lambda: len(self.detector.open_incidents()))
        dispatcher = self.orchestrator.dispatcher
        self.metrics.incidents_in_flight.set_function(lambda: dispatcher.in_flight)
        self.metrics.incidents_queued.set_function(lambda: dispatcher.queued)
        self.metrics.incidents_deferred.set_function(lambda: dispatcher.deferred)
        self.metrics.proposals_pending.set_function(lambda: self.orchestrator.approvals.pending)
        self.metrics.circuit_open.set_function(
            lambda: 1.0 if self.orchestrator.guardrails.budget.state.state == "open" else 0.0
        )
        self.metrics.outbox_pending.set_function(
            lambda: sum(c.queue_length for c in self.outbox.stats().channels.values())
        )
        self.metrics.outbox_oldest.set_function(
            lambda: max((c.oldest_age_seconds for c in self.outbox.stats().channels.values()), default=0.0)
        )

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        self.orchestrator.store.ensure_namespace()
        if self._serve_http:
            self._http = health.serve(
                self.settings.http_port, self.metrics, self.not_ready, host=self.settings.http_bind_address
            )
        self.healthy_marks.start()
        self.outbox.start()
        self.watcher.start()
        if self.elector is None:
            self._leadership_changed(True)
        else:
            thread = threading.Thread(target=self.elector.run, args=(self._stop,), name="amos-leader", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info(
            "AMOS %s started (model: %s, dry run: %s)",
            self.identity,
            self.settings.resolved_provider().value,
            self.settings.dry_run,
        )

    def stop(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop taking incidents, finish or roll back in-flight work, then give the lease up."""
        log.info("stopping: finishing in-flight remediations (grace %.0f s)", grace_seconds)
        self.watcher.stop()
        self.orchestrator.stop(grace_seconds)
        self.healthy_marks.stop()
        self.outbox.stop()
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        if self._http is not None:
            self._http.shutdown()  # type: ignore[attr-defined]

    def not_ready(self) -> list[str]:
        """Why AMOS cannot do its work now, one line each (nothing: ready): a watch not listed yet or stalled,
        reports not flowing, or a replica that lost its lease (it must restart)."""
        reasons = self.watcher.problems()
        if self.outbox.stuck():
            reasons.append("outbox: reports are not leaving it")
        if self.lost_lease.is_set():
            reasons.append("lease: lost; this replica must restart to act again")
        return reasons

    @property
    def is_leader(self) -> bool:
        return self.elector is None or self.elector.still_leads()

    # ---- plumbing --------------------------------------------------------------------------
    def _detected(self, incident: Incident) -> None:
        if incident.state is IncidentState.OPEN and incident.detected_latency_seconds is not None:
            self.metrics.detection_latency.observe(incident.detected_latency_seconds)
        if self._on_incident:
            self._on_incident(incident)
        if self.is_leader:
            self.orchestrator.submit(incident)

    def _leadership_changed(self, leads: bool) -> None:
        """Called on the lease thread: never do slow work here, or renewals stop."""
        self.metrics.leader.set(1 if leads else 0)
        if not leads:
            if self._orchestrating:
                log.warning("lost the lease: stopping all remediation; this replica must restart to act again")
                self.orchestrator.abort()
                self.lost_lease.set()
            return
        if self._orchestrating or self.lost_lease.is_set():
            return
        self._orchestrating = True
        thread = threading.Thread(target=self._take_over, name="amos-recovery", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _take_over(self) -> None:
        """First time we lead: recover (reports go to on_report), then take the open incidents."""
        try:
            self.orchestrator.start()
        except Exception:
            log.exception("could not start the orchestrator")
            return
        for incident in self.detector.open_incidents():
            self.orchestrator.submit(incident)

    def _reported(self, report: IncidentReport) -> None:
        self.metrics.record_report(report)
        if self._on_report:
            self._on_report(report)


def run_service(settings: Settings, redactor: Redactor | None = None) -> int:
    """`python main.py run`: until SIGTERM or Ctrl-C."""
    api = connect(settings.kubeconfig, namespaces=len(settings.namespaces))
    if not start_allowed(settings, api):
        return ExitCode.USAGE
    app = AmosApp(settings, api, redactor=redactor)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    app.start()
    while not stop.wait(1.0):
        if app.lost_lease.is_set():
            break
    app.stop()
    return 1 if app.lost_lease.is_set() else 0
