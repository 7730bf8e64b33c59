"""Recovery: finish or roll back what the journal says was in flight, by resuming the same steps.

Runs after this replica acquires the Lease (off the renewal path) and periodically for entries
whose owner stopped advancing them (an API outage mid-step, a crashed worker). Each entry is
first claimed with a resourceVersion-guarded owner and leader term, so two replicas never both
act on it. A resumed attempt goes through `AttemptSteps.drive` from its journaled phase and ends
through the same `IncidentHandler.finish_attempts` as an uninterrupted one; no decision is copied.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from core.logcontext import incident_scope
from core.report import ActionStatus, IncidentReport, Outcome
from orchestrator.attempt import Attempt
from orchestrator.attempt_run import AttemptRun
from orchestrator.fencing import Fence, LostLeadership, generation_of
from orchestrator.incident import IncidentHandler
from orchestrator.records import TERMINAL_PHASES, AttemptNote, JournalEntry, Ledger, Phase
from orchestrator.restore import RestoreResult, foreign_spec_writers
from orchestrator.steps import AttemptSteps
from orchestrator.store import JournalClaimed, StateStore
from orchestrator.verify import Verdict

log = logging.getLogger(__name__)


class Recovery:
    def __init__(
        self,
        steps: AttemptSteps,
        handler: IncidentHandler,
        store: StateStore,
        *,
        busy: Callable[[str], bool],
        clock: Callable[[], datetime],
    ) -> None:
        self.steps = steps
        self.handler = handler
        self.store = store
        self._busy = busy  # fingerprint -> a worker of this process is on it right now
        self._clock = clock

    def recover(self, *, stale_after: timedelta | None = None) -> list[IncidentReport]:
        """Resume every journal entry (or, with `stale_after`, those nobody advanced for that long)."""
        reports = []
        horizon = self._clock() - stale_after if stale_after is not None else None
        for entry in self.store.journals():
            if self._busy(entry.fingerprint) or (horizon is not None and entry.updated_at > horizon):
                continue
            with incident_scope(entry.incident.id):
                try:
                    report = self._resume(entry)
                except (LostLeadership, JournalClaimed) as error:
                    log.warning("recovery of incident %s stopped: %s", entry.incident.id, error)
                    break
                except Exception:
                    log.exception("could not recover the remediation of incident %s", entry.incident.id)
                    continue
            if report is not None:
                reports.append(report)
        return reports

    def _resume(self, found: JournalEntry) -> IncidentReport | None:
        claimed = self.steps.durably(
            "claim the journal",
            lambda: self.store.claim_journal(found.fingerprint, self.steps.identity, self.steps.term()),
        )
        if claimed is None:
            log.info("journal of incident %s is held by a newer leader term", found.incident.id)
            return None
        entry = claimed
        log.warning(
            "recovering incident %s: journal phase %s (attempt %d, by %s)",
            entry.incident.id,
            entry.phase.value,
            entry.attempt,
            entry.owner,
        )
        if entry.phase in TERMINAL_PHASES and entry.report is not None:  # concluded; delivery is keyed: sent once
            current = self.steps.read(entry.workload)
            self.handler.reporter.finish(entry.report, current or entry.workload, attempt_started=entry.started_at)
            self.steps.durably("close the journal", lambda: self.store.delete_journal(entry.fingerprint))
            return entry.report
        if entry.phase is Phase.SNAPSHOTTED:
            self._give_back(entry)
            self.steps.durably("close the journal", lambda: self.store.delete_journal(entry.fingerprint))
            return None
        snapshot = self.steps.snapshots.load(entry.snapshot_id)
        current = self.steps.read(entry.workload)
        if snapshot is None:
            return self._escalate(
                entry,
                f"AMOS restarted during a fix and its snapshot {entry.snapshot_id} is gone; "
                "the workload was left as it is",
            )
        if current is None:
            return self._escalate(entry, f"{entry.workload} was deleted during the fix; nothing to finish", block=False)
        expected = entry.expected_generation
        if generation_of(current) != expected and entry.phase not in TERMINAL_PHASES:
            foreign = foreign_spec_writers(current, snapshot.taken_at)
            if foreign:
                return self._escalate(
                    entry,
                    f"AMOS restarted during a fix and {entry.workload} was also changed by "
                    f"someone else ({', '.join(foreign)}); AMOS leaves it as it is",
                )
            expected = generation_of(current)  # AMOS's own write whose generation was not journaled yet
        attempt = Attempt(
            number=entry.attempt,
            snapshot=snapshot,
            records=list(entry.actions),
            resumed=True,
            applied=any(r.status is ActionStatus.APPLIED for r in entry.actions),
            verdict=Verdict.model_validate(entry.verdict) if entry.verdict else None,
            restore=RestoreResult.model_validate(entry.restore) if entry.restore else None,
        )
        run = AttemptRun(incident=entry.incident, journal=entry, attempt=attempt, fence=Fence(expected))
        if entry.phase not in TERMINAL_PHASES:
            self.steps.drive(run, entry.phase)
        if not attempt.applied:  # the interrupted session changed nothing: the attempt was given back
            self.steps.durably("close the journal", lambda: self.store.delete_journal(entry.fingerprint))
            return None
        if attempt.restore is None and entry.phase is Phase.ROLLED_BACK:
            attempt.restore = RestoreResult(ok=True, reason="restored before AMOS restarted")
        return self.handler.finish_attempts(
            entry.incident, [attempt], self._clock(), attempt_started=entry.started_at, diagnosis=entry.diagnosis
        )

    def _give_back(self, entry: JournalEntry) -> None:
        def refund(ledger: Ledger) -> None:
            ledger.attempts = max(0, min(ledger.attempts, entry.attempt - 1))

        self.steps.durably(
            "give the attempt back", lambda: self.store.update_ledger(entry.fingerprint, entry.workload, refund)
        )

    def _escalate(self, entry: JournalEntry, reason: str, *, block: bool = True) -> IncidentReport:
        if block:
            self.handler.guardrails.block(entry.workload, reason)
        reporter = self.handler.reporter
        report = reporter.build(
            entry.incident,
            Outcome.ESCALATED,
            started=self._clock(),
            attempt=entry.attempt,
            diagnosis=entry.diagnosis,
            records=entry.actions,
            verification=entry.verification,
            reason=reason,
        )
        note = AttemptNote(
            attempt=entry.attempt, incident_id=entry.incident.id, at=self._clock(), outcome="escalated", summary=reason
        )
        self.steps.durably(
            "note the attempt",
            lambda: self.store.update_ledger(entry.fingerprint, entry.workload, lambda ledger: ledger.note(note)),
        )
        current = self.steps.read(entry.workload)
        reporter.finish(report, current or entry.workload, attempt_started=entry.started_at)
        self.steps.durably("close the journal", lambda: self.store.delete_journal(entry.fingerprint))
        return report
