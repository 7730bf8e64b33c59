"""ROLLING_BACK: the snapshot goes back (fenced: never over a person's edit) and the restored workload is checked.

Reached after every failed verdict, so a change that did not help never stays. A resumed restore runs
again from the top; when it finds the snapshot already back, the interrupted one had put it back, and
it is checked and reported as an uninterrupted restore is. The attempt stays counted either way, with
a note of whether the restore held.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from core.config import Settings
from core.report import ActionRecord, ActionStatus
from orchestrator.attempt_run import AttemptRun
from orchestrator.breaker import ClusterBudget
from orchestrator.durable import DurableState
from orchestrator.events import EventRecorder
from orchestrator.fencing import FencedGuard
from orchestrator.guardrails import IncidentGate
from orchestrator.records import AttemptNote, Phase
from orchestrator.restore import RestoreResult, restore_snapshot
from orchestrator.verify import Judge
from tools.cluster import ClusterAccess
from tools.policy import IncidentScope


class RestoreStep:
    """The ROLLING_BACK step: -> ROLLED_BACK (the snapshot back, or a report saying why it could not be)."""

    def __init__(
        self,
        settings: Settings,
        *,
        access: ClusterAccess,
        state: DurableState,
        judge: Judge,
        events: EventRecorder,
        guardrails: IncidentGate,
        budget: ClusterBudget,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.access = access
        self.state = state
        self.judge = judge
        self.events = events
        self.guardrails = guardrails
        self.budget = budget
        self.clock = clock

    def restore(self, run: AttemptRun) -> Phase:
        attempt = run.attempt
        snapshot, ref = attempt.snapshot, attempt.snapshot.target
        guard = FencedGuard(
            self.settings,
            IncidentScope.of(ref),
            budget=self.budget,
            fence=run.fence,
            still_leader=self.state.still_leader,
        )
        # trusted: the snapshot was taken by this process or its signature was checked when it was loaded
        restore = restore_snapshot(self.access, guard, snapshot, run.fence.generation, trusted=True)
        attempt.restore = _put_back_before_the_restart(run, restore) if attempt.resumed else restore
        if attempt.restore.record is not None:
            attempt.records.append(attempt.restore.record)
        if attempt.restore.ok and attempt.restore.changed:
            self.guardrails.note_change(ref)
            attempt.restore_verdict = self.judge.verify_restore(snapshot)
        target = self.state.read(ref) or ref
        if attempt.restored:
            self.events.record(
                target, "RolledBack", f"attempt {attempt.number}: {attempt.restore.reason} (snapshot {snapshot.id})"
            )
        else:
            why = attempt.restore.reason
            if attempt.restore_verdict is not None and not attempt.restore_verdict.ok:
                why += f"; {attempt.restore_verdict.reason}"
            self.events.record(
                target,
                "RollbackConflict" if attempt.restore.conflict else "RollbackFailed",
                f"attempt {attempt.number}: {why}",
                warning=True,
            )
        run.journal.actions = list(attempt.records)
        run.journal.restore = attempt.restore.model_dump(mode="json", exclude={"record"})
        note = AttemptNote(
            attempt=attempt.number,
            incident_id=run.incident.id,
            at=self.clock(),
            outcome="rolled back" if attempt.restored else "not rolled back",
            summary=attempt.summary()[:500],
        )
        self.state.durably(
            "note the attempt",
            lambda: self.state.store.update_ledger(
                run.incident.fingerprint, run.incident.workload, lambda ledger: ledger.note(note)
            ),
        )
        return Phase.ROLLED_BACK


def _put_back_before_the_restart(run: AttemptRun, result: RestoreResult) -> RestoreResult:
    """A resumed restore that finds the snapshot back although the spec moved since it: AMOS put it back before
    the restart (recovery found no other writer since the snapshot), so it counts as the restore it was."""
    snapshot = run.attempt.snapshot
    moved = result.generation is not None and result.generation != snapshot.generation
    if not result.ok or result.changed or not moved:
        return result
    ref = snapshot.target
    reason = "the snapshot was put back before AMOS restarted"
    record = ActionRecord(
        verb="restore",
        target=ref,
        summary=f"restore {ref.kind}/{ref.name} from snapshot {snapshot.id}",
        status=ActionStatus.APPLIED,
        reason=reason,
    )
    return result.model_copy(update={"changed": True, "reason": reason, "record": record})
