"""One remediation attempt as a sequence of journaled steps; a new and a recovered attempt run the same code.

    begin:                 snapshot stored, journal SNAPSHOTTED, attempt counted in the ledger
    APPLYING   -> apply:   the agent session (policy + fences mediate every write); nothing applied -> DONE
    VERIFYING  -> verify:  the judge; success -> DONE (fixed); otherwise ->
    ROLLING_BACK -> restore: the snapshot put back (fenced) and checked -> ROLLED_BACK

`drive` writes the journal phase *before* each step runs, so a crash anywhere leaves the phase of
the step in flight. Recovery resumes with `drive` from that phase, the attempt marked `resumed`
(the only difference: an interrupted session is not re-run; what it changed is verified).
Every state write is retried through API blips and first checks that this replica still leads.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from agents.session import SessionResult
from core.config import Settings
from core.models import Incident, ObjectRef
from core.report import ActionRecord, ActionStatus
from orchestrator.assessment import Baseline
from orchestrator.attempt import Attempt
from orchestrator.breaker import ClusterBudget
from orchestrator.events import EventRecorder
from orchestrator.fencing import AttemptRecorder, Fence, FencedGuard, LostLeadership, StillLeader, generation_of
from orchestrator.guardrails import IncidentGate, template_hash
from orchestrator.knowngood_store import KnownGoodStore
from orchestrator.records import TERMINAL_PHASES, AttemptNote, FixWatch, JournalEntry, Ledger, Phase
from orchestrator.restore import foreign_spec_writers, restore_snapshot
from orchestrator.snapshots import SnapshotStore
from orchestrator.state_api import passing
from orchestrator.store import JournalClaimed, StateStore
from orchestrator.verify import Judge, VerdictKind, same_spec
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess
from tools.policy import IncidentBaseline, IncidentScope, effective_resources_of
from tools.read import ReadTools
from tools.snapshot import take_snapshot
from tools.write import WriteTools

log = logging.getLogger(__name__)

T = TypeVar("T")
SessionRunner = Callable[..., SessionResult | Awaitable[SessionResult]]
ContextBuilder = Callable[[Incident, Any, list[str]], Any]
STATE_WRITE_DEADLINE_SECONDS = 60.0


@dataclass
class AttemptRun:
    """Everything one attempt's steps share; the journal entry is its durable half."""

    incident: Incident
    journal: JournalEntry
    attempt: Attempt
    fence: Fence
    history: list[str] = field(default_factory=list)
    failed_actions: frozenset[str] = frozenset()
    baseline: IncidentBaseline | None = None  # the workload when the incident began: bounds every attempt's change
    runner: SessionRunner | None = None  # who decides the change; None: the agent session

    @property
    def ref(self) -> ObjectRef:
        return self.incident.workload


def current_revision(workload: dict[str, Any]) -> int | str | None:
    """The revision a workload runs now: a Deployment's number, a StatefulSet's ControllerRevision name."""
    number = objects.revision(workload)
    if number is not None:
        return number
    update = (workload.get("status") or {}).get("updateRevision")
    return str(update) if update else None


def _retryable(error: BaseException) -> bool:
    """API blips are retried; a lost Lease, a newer owner or a refusal by the API server is not."""
    return not isinstance(error, LostLeadership | JournalClaimed) and passing(error)


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
        self.judge = judge
        self.events = events
        self.guardrails = guardrails
        self.budget = budget
        self._session_runner = session_runner
        self.context_builder = context_builder
        self.clock = clock
        self.still_leader = still_leader
        self._abort = abort
        self.identity = identity
        self.term = term
        self._model = model
        self._write_deadline = write_deadline_seconds
        self._steps: dict[Phase, Callable[[AttemptRun], Phase]] = {
            Phase.APPLYING: self._apply,
            Phase.VERIFYING: self._verify,
            Phase.ROLLING_BACK: self._restore,
        }

    # --- durable writes ------------------------------------------------------------------------------

    def durably(self, what: str, write: Callable[[], T]) -> T:
        """Run a state write as the leader, retried with back-off through API blips up to a deadline."""
        for try_ in Retrying(
            retry=retry_if_exception(_retryable),
            wait=wait_exponential(multiplier=0.5, max=8),
            stop=stop_after_delay(self._write_deadline),
            reraise=True,
        ):
            with try_:
                if not self.still_leader():
                    raise LostLeadership(f"{what}: this replica no longer holds the Lease")
                return write()
        raise AssertionError("unreachable")  # Retrying either returns, or re-raises the last error

    def journal(self, run: AttemptRun, phase: Phase) -> None:
        run.journal.phase = phase
        run.journal.owner, run.journal.term = self.identity, self.term()
        self.durably(f"journal {phase.value}", lambda: self.store.write_journal(run.journal))

    def read(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The workload now (None when it is gone), read through API blips like every state write."""
        return self.durably(f"read {ref}", lambda: self._read_once(ref))

    def _read_once(self, ref: ObjectRef) -> dict[str, Any] | None:
        try:
            obj = self.access.get(ref.kind, ref.namespace, ref.name)
        except ApiCallError as error:
            if error.status == 404:
                return None
            raise
        obj.setdefault("kind", ref.kind)
        return obj

    # --- the sequence ----------------------------------------------------------------------------------

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
        snapshot = self.durably(
            "save snapshot", lambda: self.snapshots.save(take_snapshot(self.access, ref, now), fingerprint)
        )
        try:  # the revision current while the fault shows is known-bad: never a rollback target
            revision = current_revision(snapshot.workload)  # the snapshot just read it: no second read
            self.durably(
                "mark the revision bad", lambda: self.known_good.mark_bad(ref, revision, note=f"incident {incident.id}")
            )
        except (LostLeadership, JournalClaimed):
            raise
        except Exception:
            log.exception("incident %s: could not mark the current revision known-bad", incident.id)
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
        """Run the steps from `phase` to a terminal phase, journaling each phase before its step."""
        while phase not in TERMINAL_PHASES:
            self.journal(run, phase)
            phase = self._steps[phase](run)
        self.journal(run, phase)

    # --- APPLYING ---------------------------------------------------------------------------------------

    def _apply(self, run: AttemptRun) -> Phase:
        attempt = run.attempt
        if attempt.resumed:  # the session was cut off: verify whatever it changed, do not re-run it
            current = self.read(run.ref)
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
            self.durably("journal an applied action", lambda: self.store.write_journal(run.journal))
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
            still_leader=self.still_leader,
            failed_actions=run.failed_actions,
            baseline=run.baseline,
        )
        recorder = AttemptRecorder(applied)
        access = self.access.for_namespace(ref.namespace)  # its Secrets' values, never another namespace's
        write_tools = WriteTools(access, guard, recorder, known_good=self.known_good)
        holder["tools"] = write_tools
        read_tools = ReadTools(access, scope, known_good=self.known_good)
        context = self.context_builder(incident, read_tools, run.history)
        attempt.result = self.run_session(incident, context, read_tools, write_tools, self.settings, run.runner)
        attempt.records = recorder.records()
        attempt.applied = any(r.status is ActionStatus.APPLIED for r in attempt.records)
        if attempt.result is not None:
            run.journal.diagnosis = attempt.result.diagnosis

    def run_session(
        self,
        incident: Incident,
        context: Any,
        read_tools: Any,
        write_tools: Any,
        settings: Settings,
        runner: SessionRunner | None = None,
    ) -> SessionResult:
        kwargs = {"model": self._model} if self._model is not None and runner is None else {}
        try:
            outcome = (runner or self._session_runner)(incident, context, read_tools, write_tools, settings, **kwargs)
            if inspect.isawaitable(outcome):
                outcome = asyncio.run(_awaited(outcome))
            assert isinstance(outcome, SessionResult)
            return outcome
        except Exception as error:  # a session that blows up escalates; whatever it applied is verified
            log.exception("incident %s: the agent session failed", incident.id)
            return SessionResult(
                outcome_hint="escalate", escalation_reason=f"the agent session failed: {type(error).__name__}: {error}"
            )

    def _give_back(self, run: AttemptRun) -> None:
        """Nothing changed: the attempt is not counted."""
        number, now, result = run.attempt.number, self.clock(), run.attempt.result
        summary = (result.escalation_reason or "") if result else "interrupted before any change"

        def refund(ledger: Ledger) -> None:
            ledger.attempts = max(0, min(ledger.attempts, number - 1))
            ledger.note(
                AttemptNote(attempt=number, incident_id=run.incident.id, at=now, outcome="no change", summary=summary)
            )

        self.durably(
            "give the attempt back", lambda: self.store.update_ledger(run.incident.fingerprint, run.ref, refund)
        )

    # --- VERIFYING ---------------------------------------------------------------------------------------

    def _verify(self, run: AttemptRun) -> Phase:
        attempt, ref, incident = run.attempt, run.ref, run.incident
        verdict = self.judge.verify(Baseline.of(ref, attempt.snapshot.workload), cancel=self._abort)
        attempt.verdict = verdict
        attempt.interrupted = self._abort.is_set() and not verdict.ok
        run.journal.verdict = verdict.model_dump(mode="json")
        self.journal(run, Phase.VERIFYING)  # the verdict is durable, and a newer owner stops this one here
        run.journal.verification = ("after AMOS restarted: " if attempt.resumed else "") + verdict.text()
        current = self.read(ref)
        if verdict.kind is VerdictKind.DEFERRED:  # a CronJob with no run yet: judged at its next run, kept
            self.events.record(
                current or ref,
                "VerificationDeferred",
                f"incident {incident.id}, attempt {attempt.number}: {verdict.reason}",
            )
            return Phase.DONE
        if verdict.ok:
            seen = generation_of(current)
            if current is not None and run.fence.generation is not None and seen != run.fence.generation:
                writers = foreign_spec_writers(current, attempt.snapshot.taken_at)
                attempt.superseded_by = ", ".join(writers) or "someone else"
            else:
                self._mark_fixed(run, current)
            self.events.record(
                current or ref,
                "Remediated",
                f"incident {incident.id}: attempt {attempt.number} verified: {verdict.reason}",
            )
            return Phase.DONE
        self.events.record(
            current or ref,
            "VerificationFailed",
            f"incident {incident.id}, attempt {attempt.number}: {verdict.reason}; restoring the "
            f"snapshot {attempt.snapshot.id}",
            warning=True,
        )
        return Phase.ROLLING_BACK

    def _mark_fixed(self, run: AttemptRun, current: dict[str, Any] | None) -> None:
        incident, now, summary = run.incident, self.clock(), run.attempt.summary()[:500]

        def fixed(ledger: Ledger) -> None:
            ledger.note(
                AttemptNote(
                    attempt=max(1, ledger.attempts), incident_id=incident.id, at=now, outcome="fixed", summary=summary
                )
            )
            ledger.attempts, ledger.escalated_incident = 0, None

        self.durably("mark fixed", lambda: self.store.update_ledger(incident.fingerprint, incident.workload, fixed))
        self.guardrails.note_change(incident.workload)
        if current is not None:
            self.guardrails.watch_fix(
                incident.workload,
                FixWatch(
                    incident=incident,
                    fixed_at=now,
                    before_hash=template_hash(run.attempt.snapshot.workload),
                    after_hash=template_hash(current),
                    summary=summary,
                ),
            )

    # --- ROLLING_BACK --------------------------------------------------------------------------------------

    def _restore(self, run: AttemptRun) -> Phase:
        attempt = run.attempt
        snapshot, ref = attempt.snapshot, attempt.snapshot.target
        guard = FencedGuard(
            self.settings, IncidentScope.of(ref), budget=self.budget, fence=run.fence, still_leader=self.still_leader
        )
        # trusted: the snapshot was taken by this process or its signature was checked when it was loaded
        attempt.restore = restore_snapshot(self.access, guard, snapshot, run.fence.generation, trusted=True)
        if attempt.restore.record is not None:
            attempt.records.append(attempt.restore.record)
        if attempt.restore.ok and attempt.restore.changed:
            self.guardrails.note_change(ref)
            attempt.restore_verdict = self.judge.verify_restore(snapshot)
        target = self.read(ref) or ref
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
        self.durably(
            "note the attempt",
            lambda: self.store.update_ledger(
                run.incident.fingerprint, run.incident.workload, lambda ledger: ledger.note(note)
            ),
        )
        return Phase.ROLLED_BACK


async def _awaited(value: Awaitable[SessionResult]) -> SessionResult:
    return await value
