"""The Orchestrator: the dispatcher, the incident handler and recovery, assembled from collaborators.

It builds nothing from an ApiClient itself: the store, cluster access, Events, judge, guard rails,
session runner and report sink are passed in (the wiring is `service.wiring.build_orchestrator`),
so the parts can be tested alone and the outcome logic without a cluster.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from core.actions import ProposedAction
from core.config import Settings
from core.models import Evidence, FaultKind, Incident, ObjectRef, fingerprint
from core.report import IncidentReport
from orchestrator.approvals import Approvals
from orchestrator.dispatch import Dispatcher, Periodic
from orchestrator.given import GivenActions
from orchestrator.guardrails import IncidentGate
from orchestrator.incident import IncidentHandler
from orchestrator.proposals import ProposalStore
from orchestrator.proposing import Proposer
from orchestrator.recovery import Recovery
from orchestrator.reports import Reporter
from orchestrator.steps import AttemptSteps
from orchestrator.store import StateStore
from tools.cluster import ClusterAccess

log = logging.getLogger(__name__)

IDLE_RECORD_AGE = timedelta(days=7)  # ledgers and workload records nobody touched for this long are deleted
STALE_JOURNAL_AGE = timedelta(minutes=2)  # an entry not advanced for this long is re-driven in-process


class Orchestrator:
    """Consumes incidents (`submit`, thread-safe: the detector's sink) and runs the safety loop for each."""

    def __init__(
        self,
        settings: Settings,
        *,
        steps: AttemptSteps,
        guardrails: IncidentGate,
        reporter: Reporter,
        store: StateStore,
        proposals: ProposalStore,
        proposal_access: Callable[[], ClusterAccess],
        clock: Callable[[], datetime],
        abort: threading.Event,
        fault_present: Callable[[ObjectRef], bool],
        on_skip: Callable[[str], None] = lambda rule: None,
        tick_seconds: float = 0.5,
        revert_check_seconds: float = 15.0,
        stale_check_seconds: float = 30.0,
    ) -> None:
        self.settings = settings
        self.steps = steps
        self.store = store
        self.reporter = reporter
        self.guardrails = guardrails
        self._abort = abort
        self.dispatcher = Dispatcher(
            self._handle,
            max_concurrent=settings.max_concurrent_incidents,
            clock=clock,
            tick_seconds=tick_seconds,
            periodic=[
                Periodic("revert check", revert_check_seconds, self.check_reverts),
                Periodic("stale journal entries", stale_check_seconds, self.recover_stale),
                Periodic("approvals", settings.approval_check_seconds, self.check_approvals),
            ],
        )
        self.handler = IncidentHandler(
            steps,
            guardrails,
            reporter,
            store,
            defer=self.dispatcher.defer,
            stopping=lambda: self.dispatcher.stopping,
            clock=clock,
            proposer=Proposer(settings, steps, reporter, proposals, proposal_access, clock),
            on_skip=on_skip,
        )
        self.approvals = Approvals(
            self.handler,
            proposals,
            clock=clock,
            fault_present=fault_present,
            resubmit=self.submit,
            check_seconds=settings.approval_check_seconds,
        )
        self.recovery = Recovery(
            steps, self.handler, store, busy=lambda fp: fp in self.dispatcher.active_fingerprints(), clock=clock
        )

    @property
    def identity(self) -> str:
        return self.steps.identity

    @property
    def access(self) -> ClusterAccess:
        return self.steps.access

    @property
    def reports(self) -> list[IncidentReport]:
        return list(self.reporter.reports)

    # --- life cycle ---------------------------------------------------------------------------------------

    def start(self, *, recover: bool = True) -> list[IncidentReport]:
        """Create the state namespace, recover unfinished work, then start taking incidents."""
        recovered: list[IncidentReport] = []
        if recover:
            self.store.ensure_namespace()
            try:
                self.store.prune_idle(IDLE_RECORD_AGE)
            except Exception:
                log.exception("could not prune idle state records")
            recovered = self.recover()
        self.dispatcher.start()
        return recovered

    def submit(self, incident: Incident) -> None:
        """Hand over an incident (open or resolved); never blocks, never raises."""
        self.dispatcher.submit(incident)

    def stop(self, grace_seconds: float = 30.0) -> bool:
        """Stop taking incidents; let in-flight work finish for `grace_seconds`, then cut verification short
        (the change is rolled back). True when nothing was left in flight."""
        self.dispatcher.stop_taking()
        finished = self.dispatcher.wait_inflight(grace_seconds)
        if not finished:
            log.warning("grace period over: interrupting verification; unverified changes are rolled back")
            self._abort.set()
            finished = self.dispatcher.wait_inflight(max(60.0, self.settings.session_timeout_seconds))
        self.dispatcher.shutdown(wait=finished)
        return finished

    def abort(self) -> None:
        """Leadership is lost: cut verification short and take nothing new (writes are already fenced)."""
        self._abort.set()
        self.dispatcher.stop_taking()

    def wait_idle(self, timeout: float) -> bool:
        return self.dispatcher.wait_idle(timeout)

    # --- work ----------------------------------------------------------------------------------------------

    def _handle(self, incident: Incident) -> None:
        self.handler.process(incident)

    def process(self, incident: Incident) -> IncidentReport | None:
        """Handle one incident synchronously (tests, one-shot use); returns the report, if any."""
        return self.handler.process(incident)

    def apply_actions(
        self, workload: ObjectRef, actions: Sequence[ProposedAction], *, requested_by: str, reason: str
    ) -> IncidentReport | None:
        """Apply a person's chosen fix through the whole safety loop (guard rails to report); never raises."""
        now = self.steps.clock()
        incident = Incident(
            id=f"req-{uuid.uuid4().hex[:10]}",
            fingerprint=fingerprint(workload, FaultKind.REQUESTED),
            kind=FaultKind.REQUESTED,
            workload=workload,
            first_seen=now,
            last_seen=now,
            evidence=[Evidence(reason="RequestedFix", message=f"{requested_by}: {reason}")],
        )
        return self.handler.process(incident, GivenActions(actions, requested_by, reason))

    def recover(self) -> list[IncidentReport]:
        """Finish or roll back every remediation a previous process left unfinished (even after kill -9)."""
        return self.recovery.recover()

    def recover_stale(self) -> list[IncidentReport]:
        return self.recovery.recover(stale_after=STALE_JOURNAL_AGE)

    def check_approvals(self) -> list[IncidentReport]:
        """Apply approved proposals, close rejected and expired ones (approve mode)."""
        return self.approvals.check()

    def check_reverts(self) -> list[IncidentReport]:
        """Escalate every verified fix whose pod template went back to what it was before the fix."""
        reports = []
        for state in self.store.watched_fixes():
            if self.dispatcher.busy(state.workload):
                continue
            assert state.fix is not None
            report = self.handler.check_revert_of(None, self.steps.read(state.workload), state.fix)
            if report is not None:
                reports.append(report)
        return reports
