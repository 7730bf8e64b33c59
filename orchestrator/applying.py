"""APPLYING: the agent session decides the change and applies it, every write through the policy and the fence.

Each applied action is journaled (with the generation it left the workload at) the moment it lands,
so a crash mid-session leaves recovery the list of what changed. A resumed attempt does not run the
session again: it compares the workload with the snapshot and verifies whatever changed. When
nothing was applied the attempt is given back (not counted) and ends DONE.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from agents.session import SessionResult
from core.config import Settings
from core.models import Incident
from core.report import ActionRecord, ActionStatus
from orchestrator.attempt_run import AttemptRun, SessionRunner
from orchestrator.breaker import ClusterBudget
from orchestrator.durable import DurableState
from orchestrator.events import EventRecorder
from orchestrator.fencing import AttemptRecorder, FencedGuard
from orchestrator.guardrails import IncidentGate
from orchestrator.knowngood_store import KnownGoodStore
from orchestrator.records import GIVEN_BACK, AttemptNote, Ledger, Phase
from orchestrator.verify import same_spec
from tools.cluster import ClusterAccess
from tools.policy import IncidentScope
from tools.read import ReadTools
from tools.write import WriteTools

log = logging.getLogger(__name__)

ContextBuilder = Callable[[Incident, Any, list[str]], Any]


class AgentSession:
    """Runs a session runner (sync or async); one that blows up becomes an escalation, never an exception."""

    def __init__(self, runner: SessionRunner, context_builder: ContextBuilder, model: Any = None) -> None:
        self._runner = runner
        self.context_builder = context_builder
        self._model = model

    def run(
        self,
        incident: Incident,
        context: Any,
        read_tools: Any,
        write_tools: Any,
        settings: Settings,
        runner: SessionRunner | None = None,
    ) -> SessionResult:
        """`runner` replaces the agent session (a person's chosen fix); the model is the session's alone."""
        kwargs = {"model": self._model} if self._model is not None and runner is None else {}
        try:
            outcome = (runner or self._runner)(incident, context, read_tools, write_tools, settings, **kwargs)
            if inspect.isawaitable(outcome):
                outcome = asyncio.run(_awaited(outcome))
            assert isinstance(outcome, SessionResult)
            return outcome
        except Exception as error:  # a session that blows up escalates; whatever it applied is verified
            log.exception("incident %s: the agent session failed", incident.id)
            return SessionResult(
                outcome_hint="escalate", escalation_reason=f"the agent session failed: {type(error).__name__}: {error}"
            )


async def _awaited(value: Awaitable[SessionResult]) -> SessionResult:
    return await value


class ApplyStep:
    """The APPLYING step: -> VERIFYING when something was applied, else DONE (the attempt given back)."""

    def __init__(
        self,
        settings: Settings,
        *,
        access: ClusterAccess,
        state: DurableState,
        known_good: KnownGoodStore,
        events: EventRecorder,
        guardrails: IncidentGate,
        budget: ClusterBudget,
        session: AgentSession,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.access = access
        self.state = state
        self.known_good = known_good
        self.events = events
        self.guardrails = guardrails
        self.budget = budget
        self.session = session
        self.clock = clock

    def apply(self, run: AttemptRun) -> Phase:
        attempt = run.attempt
        if attempt.resumed:  # the session was cut off: verify whatever it changed, do not re-run it
            current = self.state.read(run.ref)
            attempt.applied = current is not None and not same_spec(current, attempt.snapshot.workload)
        else:
            self._run_session(run)
        run.journal.actions = list(attempt.records)
        if not attempt.applied:
            self._give_back(run)
            return Phase.DONE
        self.guardrails.note_change(run.ref)
        run.journal.expected_generation = run.fence.generation
        return Phase.VERIFYING

    def _run_session(self, run: AttemptRun) -> None:
        incident, ref, attempt = run.incident, run.ref, run.attempt
        holder: dict[str, WriteTools] = {}

        def applied(record: ActionRecord) -> None:
            if (record.target.kind, record.target.name) == (ref.kind, ref.name):
                tools = holder.get("tools")
                run.fence.advance(tools.written_generation(ref) if tools is not None else None)
            run.journal.expected_generation = run.fence.generation
            run.journal.actions.append(record)
            self.state.durably("journal an applied action", lambda: self.state.store.write_journal(run.journal))
            self.events.record(
                record.target if record.target != ref else attempt.snapshot.workload,
                "FixApplied",
                f"incident {incident.id}, attempt {attempt.number}: {record.summary}",
            )

        scope = IncidentScope.of(ref)
        guard = FencedGuard(
            self.settings,
            scope,
            budget=self.budget,
            fence=run.fence,
            still_leader=self.state.still_leader,
            failed_actions=run.failed_actions,
            baseline=run.baseline,
        )
        recorder = AttemptRecorder(applied)
        access = self.access.for_namespace(ref.namespace)  # its Secrets' values, never another namespace's
        write_tools = WriteTools(access, guard, recorder, known_good=self.known_good)
        holder["tools"] = write_tools
        read_tools = ReadTools(access, scope, known_good=self.known_good)
        context = self.session.context_builder(incident, read_tools, run.history)
        attempt.result = self.session.run(incident, context, read_tools, write_tools, self.settings, run.runner)
        attempt.records = recorder.records()
        attempt.applied = any(r.status is ActionStatus.APPLIED for r in attempt.records)
        if attempt.result is not None:
            run.journal.diagnosis = attempt.result.diagnosis

    def _give_back(self, run: AttemptRun) -> None:
        """Nothing changed: the attempt is not counted."""
        number, now, result = run.attempt.number, self.clock(), run.attempt.result
        summary = (result.escalation_reason or "") if result else "interrupted before any change"

        def refund(ledger: Ledger) -> None:
            ledger.attempts = max(0, min(ledger.attempts, number - 1))
            ledger.note(
                AttemptNote(attempt=number, incident_id=run.incident.id, at=now, outcome=GIVEN_BACK, summary=summary)
            )

        self.state.durably(
            "give the attempt back",
            lambda: self.state.store.update_ledger(run.incident.fingerprint, run.ref, refund),
        )
