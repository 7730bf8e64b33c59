"""One remediation attempt as a sequence of journaled steps; a new and a recovered attempt run the same code.

`begin` stores the snapshot, journals SNAPSHOTTED and counts the attempt; then `drive` runs the
table in `AttemptSteps.__init__` (APPLYING -> VERIFYING -> ROLLING_BACK, each step returning the next
phase) until DONE or ROLLED_BACK. `drive` writes the journal phase *before* each step runs, so a crash
anywhere leaves the phase of the step in flight; recovery resumes with `drive` from that phase, the
attempt marked `resumed` (the only difference: an interrupted session is not re-run; what it changed
is verified). Every state write goes through `orchestrator.durable`: leader-checked and retried.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from core.config import Settings
from core.models import Incident
from orchestrator.applying import AgentSession, ApplyStep, ContextBuilder
from orchestrator.attempt import Attempt
from orchestrator.attempt_run import AttemptRun, SessionRunner
from orchestrator.breaker import ClusterBudget
from orchestrator.durable import STATE_WRITE_DEADLINE_SECONDS, DurableState
from orchestrator.events import EventRecorder
from orchestrator.fencing import Fence, LostLeadership, StillLeader
from orchestrator.guardrails import IncidentGate
from orchestrator.knowngood import current_revision
from orchestrator.knowngood_store import KnownGoodStore
from orchestrator.records import TERMINAL_PHASES, JournalEntry, Ledger, Phase
from orchestrator.rolling_back import RestoreStep
from orchestrator.snapshots import SnapshotStore
from orchestrator.store import JournalClaimed, StateStore
from orchestrator.verify import Judge
from orchestrator.verifying import VerifyStep
from tools.cluster import ApiCallError, ClusterAccess
from tools.policy import IncidentBaseline, effective_resources_of
from tools.snapshot import take_snapshot

log = logging.getLogger(__name__)

Step = Callable[[AttemptRun], Phase]


class AttemptSteps:
    """The steps of an attempt and the runner that journals them."""

    def __init__(
        self,
        settings: Settings,
        *,
        access: ClusterAccess,
        store: StateStore,
        snapshots: SnapshotStore,
        known_good: KnownGoodStore,
        judge: Judge,
        events: EventRecorder,
        guardrails: IncidentGate,
        budget: ClusterBudget,
        session_runner: SessionRunner,
        context_builder: ContextBuilder,
        clock: Callable[[], datetime],
        still_leader: StillLeader,
        abort: threading.Event,
        identity: str,
        term: Callable[[], int] = lambda: 0,
        model: Any = None,
        write_deadline_seconds: float = STATE_WRITE_DEADLINE_SECONDS,
    ) -> None:
        self.settings = settings
        self.access = access
        self.store = store
        self.snapshots = snapshots
        self.known_good = known_good
        self.events = events
        self.clock = clock
        self.still_leader = still_leader
        self.identity = identity
        self.term = term
        state = DurableState(
            access,
            store,
            still_leader=still_leader,
            identity=identity,
            term=term,
            deadline_seconds=write_deadline_seconds,
        )
        self.durably, self.journal, self.read = state.durably, state.journal, state.read
        session = AgentSession(session_runner, context_builder, model)
        self.context_builder, self.run_session = context_builder, session.run  # the proposer runs it the same way
        apply = ApplyStep(
            settings,
            access=access,
            state=state,
            known_good=known_good,
            events=events,
            guardrails=guardrails,
            budget=budget,
            session=session,
            clock=clock,
        )
        verify = VerifyStep(
            state=state,
            judge=judge,
            events=events,
            guardrails=guardrails,
            known_good=known_good,
            clock=clock,
            abort=abort,
        )
        restore = RestoreStep(
            settings,
            access=access,
            state=state,
            judge=judge,
            events=events,
            guardrails=guardrails,
            budget=budget,
            clock=clock,
        )
        # The attempt after `begin`, in order: the step that runs while the journal shows each phase. Each
        # returns the next phase; DONE and ROLLED_BACK end it. Recovery re-enters this table at the phase
        # the journal was left in, so every step must be safe to run again from its start.
        self.sequence: dict[Phase, Step] = {
            # The agent session decides and applies the change, each write through the policy guard and
            # the generation fence, each applied action journaled as it lands. First: nothing can be
            # judged before something changed. Nothing applied -> DONE, the attempt given back.
            Phase.APPLYING: apply.apply,
            # The judge watches the workload. Before any restore, because a change that holds is kept
            # (DONE: the count reset, the fix watched for a revert); one that does not -> ROLLING_BACK.
            Phase.VERIFYING: verify.verify,
            # The snapshot goes back (fenced: never over a person's edit) and is checked -> ROLLED_BACK.
            # Last, and reached after every failed verdict: an unverified change never stays.
            Phase.ROLLING_BACK: restore.restore,
        }

    def begin(
        self,
        incident: Incident,
        number: int,
        history: list[str],
        failed_actions: frozenset[str],
        baseline: IncidentBaseline | None = None,
        runner: SessionRunner | None = None,
    ) -> AttemptRun:
        """Snapshot, journal and count a new attempt; nothing has changed yet."""
        ref, fingerprint, now = incident.workload, incident.fingerprint, self.clock()
        # The snapshot first: nothing may change before there is something to go back to.
        snapshot = self.durably(
            "save snapshot", lambda: self.snapshots.save(take_snapshot(self.access, ref, now), fingerprint)
        )
        # The revision current while the fault shows is known-bad: never a rollback target. Best effort:
        # a failure to mark it does not stop the attempt (a lost Lease or a newer owner does).
        try:
            revision = current_revision(snapshot.workload)  # the snapshot just read it: no second read
            self.durably(
                "mark the revision bad", lambda: self.known_good.mark_bad(ref, revision, note=f"incident {incident.id}")
            )
        except (LostLeadership, JournalClaimed):
            raise
        except Exception:
            log.exception("incident %s: could not mark the current revision known-bad", incident.id)
        # Old snapshots go, except those an unfinished journal entry (and this attempt) still needs.
        try:
            needed = {e.snapshot_id for e in self.store.journals() if e.phase not in TERMINAL_PHASES}
            self.snapshots.prune(self.settings.snapshot_retention, needed | {snapshot.id})
        except Exception:
            log.exception("could not prune old snapshots")
        journal = JournalEntry(
            fingerprint=fingerprint,
            incident=incident,
            workload=ref,
            attempt=number,
            max_attempts=self.settings.max_attempts,
            phase=Phase.SNAPSHOTTED,
            snapshot_id=snapshot.id,
            snapshot_generation=snapshot.generation,
            expected_generation=snapshot.generation,
            owner=self.identity,
            started_at=now,
            updated_at=now,
            requested_by=str(getattr(runner, "requested_by", "")),
        )
        run = AttemptRun(
            incident=incident,
            journal=journal,
            attempt=Attempt(number=number, snapshot=snapshot),
            fence=Fence(snapshot.generation),
            history=history,
            failed_actions=failed_actions,
            baseline=baseline or self._baseline(snapshot.workload),
            runner=runner,
        )
        # Journaled before it is counted: recovery finds an entry for every counted attempt (and gives
        # back the count of one that never got to APPLYING).
        self.journal(run, Phase.SNAPSHOTTED)
        self.events.record(
            snapshot.workload,
            "Remediating",
            f"incident {incident.id} ({incident.kind.value}): attempt {number} of "
            f"{self.settings.max_attempts}; snapshot {snapshot.id} taken before any change",
        )

        def count(ledger: Ledger) -> None:  # counted before anything can change: a crash cannot reset it
            ledger.attempts, ledger.last_attempt_at = number, now

        self.durably("count the attempt", lambda: self.store.update_ledger(fingerprint, ref, count))
        return run

    def _baseline(self, workload: dict[str, Any]) -> IncidentBaseline:
        """The workload as the incident began, with a pod's admitted resources (a LimitRange default counts)."""
        try:
            pods = self.access.pods_of(workload)
        except ApiCallError:
            pods = []
        effective = effective_resources_of(pods[0]) if pods else {}
        return IncidentBaseline(workload=workload, effective_resources=effective)

    def drive(self, run: AttemptRun, phase: Phase) -> None:
        """Run `sequence` from `phase` to a terminal phase, journaling each phase before its step."""
        while phase not in TERMINAL_PHASES:
            self.journal(run, phase)
            phase = self.sequence[phase](run)
        self.journal(run, phase)
