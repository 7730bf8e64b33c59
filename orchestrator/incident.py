"""The incident handler: guard rails, then proposals only or remediation attempts, then one report.

guard rails          -> proceed | propose | defer | skip | escalate (matched exhaustively)
retry limit          -> attempts spent on this fingerprint (the ledger) -> escalate once
attempts             -> `AttemptSteps.begin` + `drive`, while `should_retry`
conclusion           -> `outcome.conclude` (pure), block if it says so, report through the outbox
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.actions import Diagnosis
from core.logcontext import incident_scope
from core.models import Incident, IncidentState
from core.report import ActionStatus, IncidentReport, Outcome
from orchestrator.attempt import Attempt
from orchestrator.attempt_run import SessionRunner
from orchestrator.fencing import LostLeadership, generation_of
from orchestrator.guard_rules import GuardRule, GuardVerdict
from orchestrator.guardrails import IncidentGate, RevertStatus, check_revert
from orchestrator.outcome import conclude, should_retry
from orchestrator.proposing import Proposer
from orchestrator.records import FixWatch, Ledger, Phase
from orchestrator.reports import Reporter
from orchestrator.snapshots import SnapshotTooLarge
from orchestrator.steps import AttemptSteps
from orchestrator.store import JournalClaimed, StateStore
from tools.policy import IncidentBaseline

log = logging.getLogger(__name__)

Defer = Callable[[Incident, datetime], None]
BLOCKING_SKIPS = frozenset({GuardRule.BLOCKED, GuardRule.OUTAGE, GuardRule.STORM})  # skips worth an Event


def history_lines(ledger: Ledger) -> list[str]:
    return [
        f"attempt {note.attempt} at {note.at:%Y-%m-%d %H:%M} UTC: {note.outcome}: {note.summary}"
        for note in ledger.history[-6:]
    ]


class IncidentHandler:
    """Handles one incident synchronously (the dispatcher calls it on a worker thread)."""

    def __init__(
        self,
        steps: AttemptSteps,
        guardrails: IncidentGate,
        reporter: Reporter,
        store: StateStore,
        *,
        defer: Defer,
        stopping: Callable[[], bool],
        clock: Callable[[], datetime],
        proposer: Proposer,
        on_skip: Callable[[str], None] = lambda rule: None,
    ) -> None:
        self.steps = steps
        self.settings = steps.settings
        self.guardrails = guardrails
        self.reporter = reporter
        self.store = store
        self._defer = defer
        self._stopping = stopping
        self._clock = clock
        self.proposer = proposer
        self._on_skip = on_skip

    def process(
        self, incident: Incident, runner: SessionRunner | None = None, *, approved: bool = False
    ) -> IncidentReport | None:
        """Handle one incident; returns the report sent, if any. Never raises.

        `runner` decides the change instead of the agent session (a person's chosen fix); the rest is the same.
        `approved`: a person approved this fix, so approve mode lets it through (the other guard rails still hold).
        """
        with incident_scope(incident.id):
            try:
                return self._process(incident, runner, approved)
            except (LostLeadership, JournalClaimed) as error:
                log.warning("incident %s: stopped acting: %s", incident.id, error)
                return None
            except Exception as error:
                log.exception("incident %s: the orchestrator failed", incident.id)
                return self._after_crash(incident, error)

    def _process(self, incident: Incident, runner: SessionRunner | None, approved: bool) -> IncidentReport | None:
        if incident.state is IncidentState.RESOLVED:
            return None
        if not self.steps.still_leader():
            raise LostLeadership("this replica does not hold the leader Lease")
        started = self._clock()
        workload = self.steps.read(incident.workload)
        reverted = self.check_revert_of(incident, workload)
        if reverted is not None:
            return reverted
        decision = self.guardrails.evaluate(incident, workload, approved=approved)
        log.info(
            "incident %s (%s): guard rails say %s: %s",
            incident.id,
            incident.title,
            decision.verdict.value,
            decision.reason,
        )
        match decision.verdict:
            case GuardVerdict.PROCEED:
                assert workload is not None
                return self._remediate(incident, workload, started, runner)
            case GuardVerdict.PROPOSE:
                assert workload is not None
                return self.proposer.propose(incident, workload, decision, started, runner)
            case GuardVerdict.APPROVE:
                assert workload is not None
                return self.proposer.request_approval(incident, workload, decision, started, runner)
            case GuardVerdict.DEFER:
                assert decision.retry_at is not None
                self._on_skip(decision.rule.value)
                self._defer(incident, decision.retry_at)
                if workload is not None:
                    self.steps.events.record(workload, "Deferred", f"incident {incident.id}: {decision.reason}")
                return None
            case GuardVerdict.SKIP:
                self._on_skip(decision.rule.value)
                if workload is not None and decision.rule in BLOCKING_SKIPS:
                    self.steps.events.record(
                        workload,
                        "Skipped",
                        f"incident {incident.id} ({incident.kind.value}) not handled: {decision.reason}",
                    )
                return None
            case GuardVerdict.ESCALATE:
                scope = (
                    "the cluster" if decision.rule is GuardRule.STORM else f"namespace {incident.workload.namespace}"
                )
                report = self.reporter.build(
                    incident,
                    Outcome.ESCALATED,
                    started=started,
                    reason=decision.reason,
                    human_steps=[f"Investigate {scope} as a whole: what changed for all of these workloads at once"],
                    spec_generation=generation_of(workload),
                    outage=decision.outage,
                )
                return self.reporter.finish(report, workload or incident.workload)

    # --- remediation ---------------------------------------------------------------------------------------

    def _remediate(
        self, incident: Incident, workload: dict[str, Any], started: datetime, runner: SessionRunner | None
    ) -> IncidentReport | None:
        ref, fingerprint = incident.workload, incident.fingerprint
        window = self.settings.workload_block_seconds
        ledger = self.store.ledger(fingerprint)
        spent = ledger.spent(self._clock(), window)
        if spent >= self.settings.max_attempts:
            if ledger.escalated_incident is not None:
                log.info(
                    "incident %s: attempts spent and already escalated (%s)", incident.id, ledger.escalated_incident
                )
                return None
            reason = (
                f"the retry limit is reached: {spent} attempt(s) on this fault within {window / 3600:g} h did not hold"
            )
            self.steps.durably(
                "mark escalated",
                lambda: self.store.update_ledger(
                    fingerprint, ref, lambda entry: setattr(entry, "escalated_incident", incident.id)
                ),
            )
            self.guardrails.block(ref, reason)
            report = self.reporter.build(
                incident,
                Outcome.ESCALATED,
                started=started,
                attempt=spent,
                reason=reason,
                human_steps=history_lines(ledger),
                spec_generation=generation_of(workload),
            )
            return self.reporter.finish(report, workload)
        history = history_lines(ledger) if spent else []
        attempts: list[Attempt] = []
        baseline: IncidentBaseline | None = None  # set by the first attempt: every attempt is bounded from it
        while True:
            failed = frozenset(
                r.summary
                for a in attempts
                for r in a.records
                if r.status is ActionStatus.APPLIED and r.verb != "restore"
            )
            try:
                run = self.steps.begin(incident, spent + 1, history, failed, baseline, runner)
            except SnapshotTooLarge as error:
                return self._cannot_snapshot(incident, workload, started, str(error), attempts)
            baseline = run.baseline
            self.steps.drive(run, Phase.APPLYING)
            attempt = run.attempt
            attempts.append(attempt)
            if not should_retry(attempt, self.settings.max_attempts, self._stopping()):
                break
            spent = attempt.number
            history.append(
                f"attempt {attempt.number}: {attempt.summary()}; the snapshot was restored. Do not "
                "propose the same change again"
            )
        return self.finish_attempts(incident, attempts, started, attempt_started=run.journal.started_at)

    def _cannot_snapshot(
        self, incident: Incident, workload: dict[str, Any], started: datetime, reason: str, attempts: list[Attempt]
    ) -> IncidentReport:
        """No snapshot, no change: escalate with the reason, and say so on the workload."""
        self.steps.events.record(workload, "SnapshotFailed", f"incident {incident.id}: {reason}", warning=True)
        report = self.reporter.build(
            incident,
            Outcome.ESCALATED,
            started=started,
            attempt=attempts[-1].number if attempts else 0,
            records=[r for a in attempts for r in a.records],
            reason=reason,
            human_steps=[f"Fix {incident.workload} by hand; AMOS could not snapshot it"],
            spec_generation=generation_of(workload),
        )
        return self.reporter.finish(report, workload)

    def finish_attempts(
        self,
        incident: Incident,
        attempts: list[Attempt],
        started: datetime,
        *,
        attempt_started: datetime,
        diagnosis: Diagnosis | None = None,
    ) -> IncidentReport:
        """Conclude (pure), apply what the conclusion says, report, close the journal entry."""
        conclusion = conclude(attempts, self.settings.max_attempts)
        ref = incident.workload
        if conclusion.attempts_spent:
            self.steps.durably(
                "mark escalated",
                lambda: self.store.update_ledger(
                    incident.fingerprint, ref, lambda ledger: setattr(ledger, "escalated_incident", incident.id)
                ),
            )
        if conclusion.block_reason is not None:
            self.guardrails.block(ref, conclusion.block_reason)
        current = self.steps.read(ref)
        report = self.reporter.from_attempts(
            incident, attempts, conclusion, started=started, diagnosis=diagnosis, spec_generation=generation_of(current)
        )
        journal = self.store.read_journal(incident.fingerprint)
        if journal is not None:
            report.approved_by = journal.requested_by or None
            journal.report = report
            self.steps.durably("journal the report", lambda: self.store.write_journal(journal))
        self.reporter.finish(report, current or ref, attempt_started=attempt_started)
        self.steps.durably("close the journal", lambda: self.store.delete_journal(incident.fingerprint))
        return report

    # --- reverted fixes --------------------------------------------------------------------------------------

    def check_revert_of(
        self, incident: Incident | None, workload: dict[str, Any] | None, watch: FixWatch | None = None
    ) -> IncidentReport | None:
        ref = watch.incident.workload if watch is not None else (incident.workload if incident else None)
        if ref is None:
            return None
        watch = watch or self.store.workload_state(ref).fix
        if watch is None:
            return None
        status = check_revert(watch, workload, self._clock())
        if status is RevertStatus.HOLDING:
            return None
        self.guardrails.end_watch(ref)
        if status is not RevertStatus.REVERTED:
            log.info("fix of %s no longer watched: %s", ref, status.value)
            return None
        reason = (
            f"the fix AMOS verified at {watch.fixed_at:%Y-%m-%d %H:%M:%S} UTC ({watch.summary}) was reverted: "
            "the pod template is back to what it was before. Something (GitOps sync, a deploy pipeline, a "
            "person) puts it back; AMOS does not fight it"
        )
        self.guardrails.block(ref, "the fix was reverted")
        with incident_scope(watch.incident.id):
            report = self.reporter.build(
                watch.incident,
                Outcome.ESCALATED,
                started=self._clock(),
                reason=reason,
                human_steps=[f"Find out what reverted {ref} and make the fix there"],
                spec_generation=generation_of(workload),
            )
            self.steps.events.record(workload or ref, "FixReverted", reason, warning=True)
            return self.reporter.finish(report, workload or ref)

    # --- the loop itself failed ---------------------------------------------------------------------------------

    def _after_crash(self, incident: Incident, error: Exception) -> IncidentReport | None:
        """Leave an unfinished journal entry to recovery (it re-drives it); report truthfully what was applied."""
        try:
            entry = self.store.read_journal(incident.fingerprint)
            if entry is not None and entry.phase is not Phase.SNAPSHOTTED:
                log.warning("incident %s: left in phase %s for recovery", incident.id, entry.phase.value)
                return None  # recovery finishes or rolls it back, and reports it (the periodic re-drive)
            if entry is not None:
                self.store.delete_journal(incident.fingerprint)
        except Exception:
            log.exception("incident %s: could not read its journal after the failure", incident.id)
            return None  # the journal may hold applied changes: recovery decides, not a guess here
        report = self.reporter.build(
            incident,
            Outcome.ESCALATED,
            started=self._clock(),
            reason=f"AMOS failed while handling it, before any change: {type(error).__name__}: {error}",
        )
        try:
            return self.reporter.finish(report, incident.workload)
        except Exception:
            log.exception("incident %s: the failure report could not be stored", incident.id)
            return report
