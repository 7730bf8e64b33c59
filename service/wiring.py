"""Wiring: the orchestrator's collaborators built from one ApiClient and the settings.

The orchestrator package builds nothing itself; the service, the scenario suite and the tests
assemble it here, overriding any collaborator (session runner, judge, clock, leadership).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from kubernetes import client

from agents.context import build_context
from agents.session import run_session
from core.clock import utc_now
from core.config import Settings
from core.models import Incident, ObjectRef
from core.redaction import Redactor
from core.report import IncidentReport
from core.workload_health import WorkloadHealthSource
from orchestrator.applying import ContextBuilder
from orchestrator.attempt_run import SessionRunner
from orchestrator.breaker import ClusterBudget
from orchestrator.events import EventRecorder, replica_identity
from orchestrator.guardrails import IncidentGate
from orchestrator.knowngood_store import KnownGoodStore
from orchestrator.modes import Mode, NamespaceModes
from orchestrator.orchestrator import Orchestrator
from orchestrator.proposals import ProposalStore
from orchestrator.reports import Reporter, ReportSink
from orchestrator.snapshots import SnapshotStore
from orchestrator.steps import AttemptSteps
from orchestrator.store import StateStore
from orchestrator.verify import Judge
from tools.cluster import ClusterAccess


class ReportMailer(Protocol):
    def send_report(self, report: IncidentReport, redactor: Redactor | None = None) -> Any: ...


class MailSink:
    """Sends each report by e-mail on the caller's thread, with the mailer's own retries."""

    def __init__(self, mailer: ReportMailer) -> None:
        self.mailer = mailer

    def deliver(self, report: IncidentReport, key: str) -> None:
        self.mailer.send_report(report)


def build_orchestrator(
    settings: Settings,
    api_client: client.ApiClient,
    sink: ReportSink | None,
    *,
    session_runner: SessionRunner = run_session,
    context_builder: ContextBuilder = build_context,
    judge: Callable[[ClusterAccess], Judge] | None = None,
    redactor: Redactor | None = None,
    clock: Callable[[], datetime] = utc_now,
    model: Any = None,
    still_leader: Callable[[], bool] = lambda: True,
    term: Callable[[], int] = lambda: 0,
    identity: str | None = None,
    open_incidents: Callable[[], list[Incident]] = list,
    workload_health: WorkloadHealthSource | None = None,
    fault_present: Callable[[ObjectRef], bool] | None = None,
    on_skip: Callable[[str], None] = lambda rule: None,
    on_report: Callable[[IncidentReport], None] | None = None,
    tick_seconds: float = 0.5,
    revert_check_seconds: float = 15.0,
    write_deadline_seconds: float = 60.0,
) -> Orchestrator:
    redactor = redactor or Redactor()
    identity = identity or replica_identity()
    access = ClusterAccess(api_client, settings, redactor)
    store = StateStore(api_client, settings, clock=clock, owner=identity)
    snapshots = SnapshotStore(api_client, settings, store.signer)
    known_good = KnownGoodStore(access, signer=store.signer, clock=clock)
    events = EventRecorder(api_client, redactor=redactor, clock=clock)
    budget = ClusterBudget(api_client, settings, clock)
    modes = NamespaceModes(api_client, Mode(settings.mode_default))
    guardrails = IncidentGate(settings, store, access, budget, clock, open_incidents, modes.mode, workload_health)
    abort = threading.Event()
    steps = AttemptSteps(
        settings,
        access=access,
        store=store,
        snapshots=snapshots,
        known_good=known_good,
        judge=judge(access) if judge is not None else Judge(access, settings, clock=clock),
        events=events,
        guardrails=guardrails,
        budget=budget,
        session_runner=session_runner,
        context_builder=context_builder,
        clock=clock,
        still_leader=still_leader,
        abort=abort,
        identity=identity,
        term=term,
        model=model,
        write_deadline_seconds=write_deadline_seconds,
    )
    proposal_settings = settings.model_copy(update={"dry_run": True})
    return Orchestrator(
        settings,
        steps=steps,
        guardrails=guardrails,
        reporter=Reporter(settings, events, sink, clock, on_report),
        store=store,
        proposals=ProposalStore(api_client, settings, store.signer),
        on_skip=on_skip,
        fault_present=fault_present or (lambda ref: any(i.workload == ref for i in open_incidents())),
        proposal_access=lambda: ClusterAccess(api_client, proposal_settings, redactor),
        clock=clock,
        abort=abort,
        tick_seconds=tick_seconds,
        revert_check_seconds=revert_check_seconds,
    )
