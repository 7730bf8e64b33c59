"""Approvals: a person's decision on a pending proposal, read from the workload itself, and acted on.

A person approves with the tools they already use, so RBAC decides who may:
`kubectl annotate deploy/web amos.io/approve=<proposal-id>` (or `amos.io/reject=<id>`), which needs
the right to patch that workload; `python main.py approve <id>` writes the same annotation. On the
next check AMOS re-validates (not expired, the spec generation unchanged, the fault still there)
and applies the stored actions through the whole safety loop (ledger, snapshot, journal, policy,
verification, restore on failure, report). Annotations change metadata only, not the generation.

Several processes may check one proposal (the service, `adk web`): each decision is a transition out of
PENDING saved with the resourceVersion it was read at, so exactly one wins it and only the winner acts;
a loser re-reads the proposal and decides again (nothing, once it is no longer pending).

An approval is never lost. The winner moves the proposal to APPLYING before it acts and to APPROVED
once a report says how it went (with the budget used up or the breaker open, that is a recommendation:
AMOS changes nothing then, and says so). When the guard rails hold the fix without a report (the
workload's cooldown, a block), it goes back to PENDING, still approved by its annotation, and is tried
again after `HELD_CHECKS` checks. A proposal a stopped process left APPLYING is settled at the next check: when
its attempt began (a journal entry, or a ledger note since the approval), recovery finishes and
reports it; when it did not, it is PENDING again and applied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from core.models import Incident, ObjectRef
from core.report import IncidentReport, Outcome
from orchestrator.fencing import generation_of
from orchestrator.given import GivenActions
from orchestrator.incident import IncidentHandler
from orchestrator.proposals import Proposal, ProposalChanged, ProposalState, ProposalStore, decision_of, spec_digest
from orchestrator.records import GIVEN_BACK

log = logging.getLogger(__name__)

MAX_REDECISIONS = 3  # a proposal changed under us this often in one check is left to the next check
HELD_CHECKS = 12  # an approval the guard rails held is tried again after this many checks (a minute by default)


class Approvals:
    def __init__(
        self,
        handler: IncidentHandler,
        proposals: ProposalStore,
        *,
        clock: Callable[[], datetime],
        fault_present: Callable[[ObjectRef], bool],
        resubmit: Callable[[Incident], None],
        check_seconds: float,
    ) -> None:
        self.handler = handler
        self.proposals = proposals
        self._clock = clock
        self._hold = timedelta(seconds=check_seconds * HELD_CHECKS)
        self._fault_present = fault_present
        self._resubmit = resubmit
        self.pending = 0  # proposals waiting at the last check (for `amos_proposals_pending`)

    def check(self) -> list[IncidentReport]:
        """Act on every decided or expired proposal; the rest keep waiting."""
        listed = self.proposals.list(ProposalState.APPLYING, ProposalState.PENDING)
        settled = [self._settle_left(p) for p in listed if p.state is ProposalState.APPLYING]
        waiting = [p for p in listed + settled if p is not None and p.state is ProposalState.PENDING]
        reports = []
        self.pending = len(waiting)
        for proposal in waiting:
            try:
                report = self._check(proposal)
            except Exception:
                log.exception("could not act on proposal %s", proposal.id)
                continue
            if report is not None:
                reports.append(report)
        return reports

    def check_one(self, proposal_id: str) -> IncidentReport | None:
        """Act on one proposal now (a decision just made in `adk web`); None while it still waits."""
        proposal = self.proposals.get(proposal_id)
        if proposal is None or proposal.state is not ProposalState.PENDING:
            return None
        return self._check(proposal)

    def _check(self, proposal: Proposal) -> IncidentReport | None:
        """Decide on `proposal` as read; when another process changed it first, read it again and decide again."""
        for _ in range(MAX_REDECISIONS):
            try:
                return self._decide(proposal)
            except ProposalChanged:
                log.info("proposal %s changed since it was read; reading it again", proposal.id)
            fresh = self.proposals.get(proposal.id)
            if fresh is None or fresh.state is not ProposalState.PENDING:
                return None  # decided (and acted on) by whoever changed it
            proposal = fresh
        log.warning("proposal %s kept changing; it is checked again next time", proposal.id)
        return None

    def _decide(self, proposal: Proposal) -> IncidentReport | None:
        """Raises ProposalChanged (before any other effect) when another process moved the proposal first."""
        steps = self.handler.steps
        workload = steps.read(proposal.workload)
        now = self._clock()
        if workload is None:
            self._close(proposal, ProposalState.SUPERSEDED, "", "the workload was deleted")
            return None
        decided = decision_of(workload, proposal.id)
        if decided is None:
            if now < proposal.expires_at:
                return None
            return self._refuse(
                proposal,
                workload,
                ProposalState.EXPIRED,
                "",
                f"proposal {proposal.id} expired at {proposal.expires_at:%Y-%m-%d %H:%M} UTC "
                "without a decision; nothing was changed",
            )
        state, who = decided
        if state is ProposalState.APPROVED and proposal.held_until is not None and now < proposal.held_until:
            return None  # held by the guard rails a moment ago: tried again at its time
        if state is ProposalState.REJECTED:
            return self._refuse(
                proposal,
                workload,
                ProposalState.REJECTED,
                who,
                f"proposal {proposal.id} was rejected by {who}; nothing was changed",
            )
        if now >= proposal.expires_at:
            late = (
                f"{who} approved proposal {proposal.id}, but the guard rails held it until it expired"
                if proposal.held_until is not None
                else f"{who} approved proposal {proposal.id} after it expired"
            )
            return self._refuse(proposal, workload, ProposalState.EXPIRED, who, f"{late}; nothing was changed")
        if spec_digest(workload) != proposal.spec_digest:
            refused = self._refuse(
                proposal,
                workload,
                ProposalState.SUPERSEDED,
                who,
                f"{proposal.workload} changed since proposal {proposal.id} was made (its spec is no "
                "longer the one the fix was validated against); it was not applied, and AMOS "
                "diagnoses afresh",
            )
            self._resubmit(proposal.incident)
            return refused
        if not self._fault_present(proposal.workload):
            return self._refuse(
                proposal,
                workload,
                ProposalState.SUPERSEDED,
                who,
                f"the fault of proposal {proposal.id} is gone; it was not applied",
            )
        applying = self._close(proposal, ProposalState.APPLYING, who, "approved; being applied")  # the winner applies
        approved = f"proposal {proposal.id} approved by {who}; applying it"
        steps.events.record(workload, "ProposalApproved", approved, key=f"{proposal.id}/approved")  # once, if held
        reason = proposal.diagnosis.root_cause if proposal.diagnosis else f"proposal {proposal.id}"
        report = self.handler.process(proposal.incident, GivenActions(proposal.actions, who, reason), approved=True)
        if report is None:  # held by the guard rails (their Event says why), or this process stopped acting
            held = self._clock() + self._hold
            note = f"approved by {who}; held by the guard rails, tried again after {held:%H:%M:%S} UTC"
            self._move(applying, ProposalState.PENDING, "", note, held_until=held)
            return None
        self._move(applying, ProposalState.APPROVED, who, f"applied through the safety loop: {report.outcome.value}")
        return report

    def _settle_left(self, proposal: Proposal) -> Proposal | None:
        """A proposal a stopped process left APPLYING: approved if its attempt began, else pending (and applied) again.

        The proposal as saved; None while its attempt is journaled (recovery's to finish) or when it could not be
        settled now (the next check tries again)."""
        try:
            return self._settle(proposal)
        except ProposalChanged:
            log.info("proposal %s changed since it was read; it is settled at the next check", proposal.id)
        except Exception:
            log.exception("could not settle proposal %s", proposal.id)
        return None

    def _settle(self, proposal: Proposal) -> Proposal | None:
        fingerprint = proposal.incident.fingerprint
        store = self.handler.steps.store
        if store.read_journal(fingerprint) is not None:
            return None  # its attempt is journaled: recovery finishes or rolls it back and reports it; settled after
        since = proposal.decided_at
        began = since is not None and any(  # given back: nothing was applied
            note.incident_id == proposal.incident.id and note.at >= since and note.outcome != GIVEN_BACK
            for note in store.ledger(fingerprint).history
        )
        if began:
            note = "applied through the safety loop (AMOS restarted; recovery finished the attempt and reported it)"
            return self._move(proposal, ProposalState.APPROVED, proposal.decided_by, note)
        log.warning("proposal %s was approved but not applied before AMOS stopped; applying it now", proposal.id)
        return self._move(proposal, ProposalState.PENDING, "", "approved; AMOS stopped before applying it")

    def _close(self, proposal: Proposal, state: ProposalState, who: str, note: str) -> Proposal:
        """Move the proposal out of PENDING as it was read; ProposalChanged when another process did so first."""
        return self._move(proposal, state, who, note, decided_at=self._clock())

    def _move(
        self,
        proposal: Proposal,
        state: ProposalState,
        who: str,
        note: str,
        *,
        decided_at: datetime | None = None,
        held_until: datetime | None = None,
    ) -> Proposal:
        """Save `proposal` (as read) in `state`; ProposalChanged when another process changed it first."""
        moved = proposal.model_copy(
            update={
                "state": state,
                "decided_by": who,
                "decided_at": decided_at or proposal.decided_at,
                "note": note,
                "held_until": held_until,
            }
        )
        return self.handler.steps.durably("save the proposal", lambda: self.proposals.save(moved))

    def _refuse(
        self, proposal: Proposal, workload: dict[str, object], state: ProposalState, who: str, reason: str
    ) -> IncidentReport:
        self._close(proposal, state, who, reason)
        reporter = self.handler.reporter
        self.handler.steps.events.record(
            workload, f"Proposal{state.value.capitalize()}", reason, warning=state is not ProposalState.REJECTED
        )
        report = reporter.build(
            proposal.incident,
            Outcome.ESCALATED,
            started=self._clock(),
            diagnosis=proposal.diagnosis,
            records=proposal.records,
            reason=reason,
            spec_generation=generation_of(workload),
        )
        report.proposal_id = proposal.id
        return reporter.finish(report, workload)
