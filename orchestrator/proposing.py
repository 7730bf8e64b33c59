"""Diagnose without changing anything: a recommendation (dry run, GitOps, observe) or a proposal to approve.

Both run the agent session against a dry-run cluster access, so every proposed action goes through
the policy guard and a server-side dry-run and shows its would-be diff, and nothing is written.
In approve mode the actions that passed both are stored (`orchestrator.proposals`) for a person to
approve; `orchestrator.approvals` applies an approved one through the whole safety loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from agents.session import SessionResult
from core.actions import ProposedAction
from core.config import Settings
from core.models import Incident
from core.report import ActionRecord, ActionStatus, IncidentReport, Outcome
from orchestrator.attempt_run import SessionRunner
from orchestrator.fencing import generation_of
from orchestrator.guard_rules import GuardDecision, GuardRule
from orchestrator.proposals import Proposal, ProposalState, ProposalStore, new_proposal_id, spec_digest
from orchestrator.reports import Reporter
from orchestrator.steps import AttemptSteps
from tools.cluster import ClusterAccess
from tools.policy import ActionBudget, IncidentScope, PolicyGuard
from tools.read import ReadTools
from tools.write import ActionRecorder, WriteTools

log = logging.getLogger(__name__)


class Proposer:
    def __init__(
        self,
        settings: Settings,
        steps: AttemptSteps,
        reporter: Reporter,
        proposals: ProposalStore,
        access: Callable[[], ClusterAccess],
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.steps = steps
        self.reporter = reporter
        self.proposals = proposals
        self._access = access
        self._clock = clock

    def _dry_run(
        self, incident: Incident, runner: SessionRunner | None
    ) -> tuple[SessionResult, list[ActionRecord], list[ProposedAction]]:
        """The session's result, every record, and the actions that passed the policy and the dry-run."""
        settings = self.settings.model_copy(update={"dry_run": True})
        access = self._access()
        scope = IncidentScope.of(incident.workload)
        guard = PolicyGuard(settings, scope, budget=ActionBudget(settings.actions_per_hour))
        recorder = ActionRecorder()
        write_tools = WriteTools(access, guard, recorder, known_good=self.steps.known_good)
        read_tools = ReadTools(access, scope, known_good=self.steps.known_good)
        context = self.steps.context_builder(incident, read_tools, [])
        result = self.steps.run_session(incident, context, read_tools, write_tools, settings, runner)
        valid: list[ProposedAction] = []
        if result.diagnosis is not None and not result.diagnosis.escalate:
            for action in result.diagnosis.proposed_actions:
                before = len(recorder.records())
                write_tools.apply(action)  # dry-run only: settings.dry_run is set on this access
                made = recorder.records()[before:]
                if made and made[-1].status is ActionStatus.DRY_RUN:
                    valid.append(action)
        return result, recorder.records(), valid

    def propose(
        self,
        incident: Incident,
        workload: dict[str, Any],
        decision: GuardDecision,
        started: datetime,
        runner: SessionRunner | None = None,
    ) -> IncidentReport:
        """Diagnose and recommend; nothing is changed."""
        result, records, _ = self._dry_run(incident, runner)
        records = [
            r.model_copy(update={"reason": f"proposed, not applied: {decision.reason}"})
            if r.status is ActionStatus.DRY_RUN
            else r
            for r in records
        ]
        proposes = bool(result.diagnosis and result.diagnosis.proposed_actions and not result.diagnosis.escalate)
        if result.outcome_hint == "recommend" or proposes:
            where = " in Git" if decision.rule is GuardRule.GITOPS else ""
            outcome, reason, steps = (
                Outcome.RECOMMENDED,
                decision.reason,
                [f"Review the proposed change and apply it yourself{where}"],
            )
        else:
            outcome, reason, steps = Outcome.ESCALATED, result.escalation_reason or decision.reason, []
        report = self.reporter.build(
            incident,
            outcome,
            started=started,
            results=[result],
            records=records,
            reason=reason,
            human_steps=steps,
            spec_generation=generation_of(workload),
        )
        return self.reporter.finish(report, workload)

    def request_approval(
        self,
        incident: Incident,
        workload: dict[str, Any],
        decision: GuardDecision,
        started: datetime,
        runner: SessionRunner | None = None,
    ) -> IncidentReport | None:
        """Store the validated fix as a proposal and ask a person; without one, recommend or escalate.

        `runner`: the actions a person chose (adk web) instead of a fresh diagnosis."""
        generation, digest = generation_of(workload), spec_digest(workload)
        waiting = [
            p
            for p in self.proposals.list(ProposalState.PENDING, ProposalState.APPLYING)  # applying: being applied
            if p.incident.fingerprint == incident.fingerprint and p.spec_digest == digest
        ]
        if waiting:
            log.info("incident %s: proposal %s already waits for approval", incident.id, waiting[0].id)
            return None
        result, records, valid = self._dry_run(incident, runner)
        if not valid:
            return self.propose(incident, workload, decision, started, runner)
        now = self._clock()
        proposal = Proposal(
            id=new_proposal_id(),
            incident=incident,
            workload=incident.workload,
            generation=generation,
            spec_digest=digest,
            actions=valid,
            records=[r for r in records if r.status is ActionStatus.DRY_RUN],
            diagnosis=result.diagnosis,
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.proposal_ttl_seconds),
        )
        self.steps.durably("store the proposal", lambda: self.proposals.save(proposal))
        self.steps.events.record(
            workload,
            "ProposalCreated",
            f"incident {incident.id}: proposal {proposal.id} waits for approval "
            f"(until {proposal.expires_at:%Y-%m-%d %H:%M} UTC): " + "; ".join(a.summary() for a in valid),
        )
        report = self.reporter.build(
            incident,
            Outcome.APPROVAL_NEEDED,
            started=started,
            results=[result],
            records=records,
            reason=decision.reason,
            spec_generation=generation,
        )
        report.proposal_id = proposal.id
        return self.reporter.finish(report, workload)
