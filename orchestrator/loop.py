"""The safety loop: incidents in, guarded and verified remediations (or escalations) out, every step journaled.

For one incident: guard rails -> retry limit (attempts from the ledger) -> snapshot -> journal ->
context -> agent session (the policy guard and a generation fence mediate every write) ->
verify -> on failure restore the snapshot (fenced: a person's change is never overwritten) and
retry while attempts remain -> report by e-mail -> Events. One session at a time per workload
(so per fingerprint), at most `max_concurrent_incidents` at once. `recover()` finishes or rolls
back whatever a previous process left in the journal.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from kubernetes import client

from agents.context import build_context
from agents.session import SessionResult, run_session
from core.actions import DeletePod, ProposedAction
from core.config import Settings
from core.logcontext import incident_scope
from core.models import Incident, IncidentState, ObjectRef
from core.redaction import Redactor
from core.report import ActionRecord, ActionStatus, IncidentReport, Outcome
from orchestrator.events import EventRecorder
from orchestrator.guardrails import (
    ClusterBudget,
    GuardDecision,
    GuardRails,
    GuardVerdict,
    RevertStatus,
    check_revert,
    template_hash,
)
from orchestrator.restore import RestoreResult, foreign_spec_writers, restore_snapshot
from orchestrator.store import (
    TERMINAL_PHASES,
    AttemptNote,
    FixWatch,
    JournalEntry,
    Ledger,
    Phase,
    StateStore,
    utc_now,
)
from orchestrator.verify import Baseline, Judge, Verdict, VerdictKind, same_spec
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess
from tools.policy import ActionBudget, Decision, IncidentScope, PolicyGuard, WorkloadHistory
from tools.read import ReadTools
from tools.snapshot import Snapshot, take_snapshot
from tools.write import ActionRecorder, WriteTools

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
SessionRunner = Callable[..., SessionResult | Awaitable[SessionResult]]
ContextBuilder = Callable[[Incident, Any, list[str]], Any]
REPORTS_KEPT = 200
IDLE_RECORD_AGE = timedelta(days=7)  # ledgers and workload records nobody touched for this long are deleted
INTERRUPTED = "verification interrupted: AMOS is stopping"


class ReportMailer(Protocol):
    def send_report(self, report: IncidentReport, redactor: Redactor | None = None) -> Any: ...


def _generation(obj: dict[str, Any] | None) -> int | None:
    value = objects.meta(obj or {}).get("generation")
    return int(value) if value is not None else None


# --- per-attempt helpers -----------------------------------------------------------------------------


class Fence:
    """The spec generation AMOS expects its workload to have: the snapshot's, then that of its own last write."""

    def __init__(self, generation: int | None) -> None:
        self._generation = generation
        self._lock = threading.Lock()

    @property
    def generation(self) -> int | None:
        with self._lock:
            return self._generation

    def advance(self, generation: int | None) -> None:
        with self._lock:
            if generation is not None:
                self._generation = generation


class FencedGuard(PolicyGuard):
    """The policy guard plus one rule: the workload's spec is still as AMOS last saw or left it.

    So a person's edit between the snapshot and the fix (or between two fixes) is never built on or
    overwritten: the write is refused and the incident escalates.
    """

    def __init__(self, settings: Settings, scope: IncidentScope, *, budget: ActionBudget, fence: Fence) -> None:
        super().__init__(settings, scope, budget=budget)
        self.fence = fence

    def check(self, action: ProposedAction, target: dict[str, Any] | None,
              history: WorkloadHistory | None = None) -> Decision:
        decision = super().check(action, target, history)
        if not decision.allowed:
            return decision
        workload = (history.workload if history is not None else None) if isinstance(action, DeletePod) else target
        expected, seen = self.fence.generation, _generation(workload)
        if workload is not None and expected is not None and seen != expected:
            return Decision(allowed=False, reason=(
                f"{self.scope.kind}/{self.scope.name} was changed by someone else since AMOS took its snapshot "
                f"(generation {seen}, expected {expected}); AMOS does not build on or overwrite that change"))
        return decision


class AttemptRecorder(ActionRecorder):
    """The session's action log; each applied action is journaled (and fences advanced) as it happens."""

    def __init__(self, on_applied: Callable[[ActionRecord], None]) -> None:
        super().__init__()
        self._on_applied = on_applied

    def append(self, record: ActionRecord) -> None:
        super().append(record)
        if record.status is ActionStatus.APPLIED:
            try:
                self._on_applied(record)
            except Exception:  # journaling must not turn a done write into a tool failure
                log.exception("could not journal the applied action %s", record.summary)


@dataclass
class Attempt:
    number: int
    snapshot: Snapshot
    result: SessionResult | None = None
    records: list[ActionRecord] = field(default_factory=list)
    applied: bool = False
    verdict: Verdict | None = None
    restore: RestoreResult | None = None
    restore_verdict: Verdict | None = None

    @property
    def fixed(self) -> bool:
        return self.applied and self.verdict is not None and self.verdict.ok

    @property
    def restored(self) -> bool:
        return (self.restore is not None and self.restore.ok
                and (self.restore_verdict is None or self.restore_verdict.ok))

    def summary(self) -> str:
        applied = "; ".join(r.summary for r in self.records if r.status is ActionStatus.APPLIED and r.verb != "restore")
        verdict = self.verdict.reason if self.verdict else "not verified"
        return f"{applied or 'no change'} -> {verdict}"


# --- the orchestrator -----------------------------------------------------------------------------------


class Orchestrator:
    """Consumes incidents (`submit`, thread-safe: the detector's sink) and runs the safety loop for each."""

    def __init__(
        self,
        settings: Settings,
        api_client: client.ApiClient,
        mailer: ReportMailer | None,
        session_runner: SessionRunner = run_session,
        *,
        context_builder: ContextBuilder = build_context,
        judge: Judge | None = None,
        redactor: Redactor | None = None,
        clock: Clock = utc_now,
        model: Any = None,
        tick_seconds: float = 0.5,
        revert_check_seconds: float = 15.0,
        on_report: Callable[[IncidentReport], None] | None = None,
        identity: str | None = None,
    ) -> None:
        self.settings = settings
        self.api_client = api_client
        self.mailer = mailer
        self.redactor = redactor or Redactor()
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self._clock = clock
        self._session_runner = session_runner
        self._context_builder = context_builder
        self._model = model
        self.access = ClusterAccess(api_client, settings, self.redactor)
        self.store = StateStore(api_client, settings, clock=clock, owner=self.identity)
        self.events = EventRecorder(api_client, redactor=self.redactor, clock=clock)
        self.budget = ClusterBudget(self.store, settings, clock)
        self.guardrails = GuardRails(settings, self.store, self.access, self.budget, clock)
        self.judge = judge or Judge(self.access, settings, clock=clock)
        self.tick_seconds = tick_seconds
        self.revert_check_seconds = revert_check_seconds
        self.on_report = on_report
        self.reports: deque[IncidentReport] = deque(maxlen=REPORTS_KEPT)
        self.deliveries: deque[Any] = deque(maxlen=REPORTS_KEPT)
        self._queue: queue.Queue[Incident] = queue.Queue()
        self._executor = ThreadPoolExecutor(max_workers=settings.max_concurrent_incidents,
                                            thread_name_prefix="amos-incident")
        self._lock = threading.Condition()
        self._active: dict[ObjectRef, str] = {}  # workload -> fingerprint being handled
        self._waiting: dict[ObjectRef, dict[str, Incident]] = {}
        self._deferred: dict[str, tuple[datetime, Incident]] = {}
        self._inflight = 0
        self._reverts_running = False
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------------------

    def start(self, *, recover: bool = True) -> list[IncidentReport]:
        """Create the state namespace, recover unfinished work, then start taking incidents.

        Returns the reports of recovered remediations (already delivered, and passed to `on_report`).
        """
        recovered: list[IncidentReport] = []
        if recover:
            self.store.ensure_namespace()
            try:
                self.store.prune_idle(IDLE_RECORD_AGE)
            except Exception:
                log.exception("could not prune idle state records")
            recovered = self.recover()
        self._thread = threading.Thread(target=self._dispatch, name="amos-orchestrator", daemon=True)
        self._thread.start()
        return recovered

    def submit(self, incident: Incident) -> None:
        """Hand over an incident (open or resolved); never blocks, never raises."""
        if self._stopping.is_set():
            log.info("stopping: incident %s (%s) not taken", incident.id, incident.title)
            return
        self._queue.put(incident)

    def stop(self, grace_seconds: float = 30.0) -> bool:
        """Stop taking incidents; let in-flight work finish for `grace_seconds`, then cut verification short
        (the change is rolled back). True when nothing was left in flight."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.tick_seconds * 4, 2.0))
        finished = self._wait_inflight(grace_seconds)
        if not finished:
            log.warning("grace period over: interrupting verification; unverified changes are rolled back")
            self._abort.set()
            finished = self._wait_inflight(max(60.0, self.settings.session_timeout_seconds))
        self._executor.shutdown(wait=finished, cancel_futures=True)
        return finished

    def _wait_inflight(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def wait_idle(self, timeout: float) -> bool:
        """True once no incident is queued or in flight (deferred ones do not count)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._queue.empty() and not self._inflight and not self._active:
                    return True
            time.sleep(0.1)
        return False

    # --- dispatch -----------------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        next_revert_check = time.monotonic() + self.revert_check_seconds
        while not self._stopping.is_set():
            try:
                incident: Incident | None = self._queue.get(timeout=self.tick_seconds)
            except queue.Empty:
                incident = None
            try:
                if incident is not None:
                    self._admit(incident)
                self._release_deferred()
                if time.monotonic() >= next_revert_check:
                    next_revert_check = time.monotonic() + self.revert_check_seconds
                    self._schedule_revert_check()
            except Exception:  # the dispatcher must survive anything
                log.exception("orchestrator dispatch failed")

    def _admit(self, incident: Incident) -> None:
        ref, fingerprint = incident.workload, incident.fingerprint
        with self._lock:
            if incident.state is IncidentState.RESOLVED:
                self._deferred.pop(fingerprint, None)
                self._waiting.get(ref, {}).pop(fingerprint, None)
                return
            if ref in self._active:
                if self._active[ref] != fingerprint:
                    self._waiting.setdefault(ref, {})[fingerprint] = incident
                else:
                    log.debug("incident %s: already being handled", incident.id)
                return
            if fingerprint in self._deferred:
                self._deferred[fingerprint] = (self._deferred[fingerprint][0], incident)
                return
            self._active[ref] = fingerprint
            self._inflight += 1
        self._executor.submit(self._work, incident)

    def _work(self, incident: Incident) -> None:
        try:
            if not self._stopping.is_set():
                self.process(incident)
        finally:
            with self._lock:
                self._active.pop(incident.workload, None)
                waiting = self._waiting.pop(incident.workload, {})
                waiting.pop(incident.fingerprint, None)  # our own fix or restore moved it; the run decided
                self._inflight -= 1
                self._lock.notify_all()
            for other in waiting.values():
                self._queue.put(other)

    def _defer(self, incident: Incident, until: datetime) -> None:
        with self._lock:
            self._deferred[incident.fingerprint] = (until, incident)

    def _release_deferred(self) -> None:
        now = self._clock()
        with self._lock:
            due = [fp for fp, (until, _) in self._deferred.items() if until <= now]
            incidents = [self._deferred.pop(fp)[1] for fp in due]
        for incident in incidents:
            self._admit(incident)

    def _schedule_revert_check(self) -> None:
        with self._lock:
            if self._reverts_running:
                return
            self._reverts_running = True

        def run() -> None:
            try:
                self.check_reverts()
            except Exception:
                log.exception("revert check failed")
            finally:
                with self._lock:
                    self._reverts_running = False

        self._executor.submit(run)

    # --- one incident -------------------------------------------------------------------------------------

    def process(self, incident: Incident) -> IncidentReport | None:
        """Handle one incident synchronously; returns the report sent, if any. Never raises."""
        with incident_scope(incident.id):
            try:
                return self._process(incident)
            except Exception as error:
                log.exception("incident %s: the orchestrator failed", incident.id)
                return self._after_crash(incident, error)

    def _process(self, incident: Incident) -> IncidentReport | None:
        if incident.state is IncidentState.RESOLVED:
            return None
        started = self._clock()
        workload = self._read(incident.workload)
        reverted = self._check_revert_of(incident.workload, workload)
        if reverted is not None:
            return reverted
        decision = self.guardrails.evaluate(incident, workload)
        log.info("incident %s (%s): guard rails say %s: %s", incident.id, incident.title, decision.verdict.value,
                 decision.reason)
        match decision.verdict:
            case GuardVerdict.SKIP:
                if workload is not None and decision.rule in ("blocked", "outage"):
                    self.events.record(workload, "Skipped", f"incident {incident.id} ({incident.kind.value}) "
                                                            f"not handled: {decision.reason}")
                return None
            case GuardVerdict.DEFER:
                assert decision.retry_at is not None
                self._defer(incident, decision.retry_at)
                if workload is not None:
                    self.events.record(workload, "Deferred", f"incident {incident.id}: {decision.reason}")
                return None
            case GuardVerdict.ESCALATE:
                report = self._report(incident, Outcome.ESCALATED, started=started, attempt=0,
                                      escalation_reason=decision.reason,
                                      human_steps=[f"Investigate namespace {incident.workload.namespace} as a whole"])
                return self._finish(report, workload or incident.workload)
            case GuardVerdict.PROPOSE:
                assert workload is not None
                return self._propose(incident, workload, decision, started)
        assert workload is not None
        return self._remediate(incident, workload, started)

    def _read(self, ref: ObjectRef) -> dict[str, Any] | None:
        try:
            obj = self.access.get(ref.kind, ref.namespace, ref.name)
        except ApiCallError as error:
            if error.status == 404:
                return None
            raise
        obj.setdefault("kind", ref.kind)
        return obj

    # --- proposals only ---------------------------------------------------------------------------------

    def _propose(self, incident: Incident, workload: dict[str, Any], decision: GuardDecision,
                 started: datetime) -> IncidentReport:
        """Diagnose and recommend; every proposal is validated by a server-side dry-run, nothing is changed."""
        settings = self.settings.model_copy(update={"dry_run": True})
        access = ClusterAccess(self.api_client, settings, self.redactor)
        scope = IncidentScope.of(incident.workload)
        guard = PolicyGuard(settings, scope, budget=ActionBudget(settings.actions_per_hour))
        recorder = ActionRecorder()
        write_tools = WriteTools(access, guard, recorder)
        read_tools = ReadTools(access, scope)
        context = self._context_builder(incident, read_tools, [])
        result = self._run_session(incident, context, read_tools, write_tools, settings)
        if result.diagnosis is not None and not result.diagnosis.escalate:
            for action in result.diagnosis.proposed_actions:
                write_tools.apply(action)  # dry-run only: settings.dry_run is set on this access
        records = [r.model_copy(update={"reason": f"proposed, not applied: {decision.reason}"})
                   if r.status is ActionStatus.DRY_RUN else r for r in recorder.records()]
        after = self._read(incident.workload)
        if after is not None and _generation(after) != _generation(workload):
            log.error("incident %s: the workload changed during a proposal-only session", incident.id)
        if result.outcome_hint == "recommend" or (result.diagnosis and result.diagnosis.proposed_actions
                                                 and not result.diagnosis.escalate):
            outcome, reason = Outcome.RECOMMENDED, decision.reason
            steps = ["Review the proposed change and apply it yourself"
                     + (" in Git" if decision.rule == "gitops" else "")]
        else:
            outcome, reason = Outcome.ESCALATED, result.escalation_reason or decision.reason
            steps = []
        report = self._report(incident, outcome, started=started, attempt=0, result=result, records=records,
                              escalation_reason=reason, human_steps=steps)
        return self._finish(report, workload)

    # --- remediation ---------------------------------------------------------------------------------------

    def _remediate(self, incident: Incident, workload: dict[str, Any], started: datetime) -> IncidentReport | None:
        ref, fingerprint = incident.workload, incident.fingerprint
        window = self.settings.workload_block_seconds
        ledger = self.store.ledger(fingerprint)
        spent = ledger.spent(self._clock(), window)
        if spent >= self.settings.max_attempts:
            if ledger.escalated_incident == incident.id:
                log.info("incident %s: attempts spent and already escalated", incident.id)
                return None
            reason = (f"the retry limit is reached: {spent} attempt(s) on this fault within "
                      f"{window / 3600:g} h did not hold")
            self.store.update_ledger(fingerprint, ref, lambda entry: setattr(entry, "escalated_incident", incident.id))
            self.guardrails.block(ref, reason)
            report = self._report(incident, Outcome.ESCALATED, started=started, attempt=spent,
                                  escalation_reason=reason, human_steps=self._history_lines(ledger))
            return self._finish(report, workload)
        history = self._history_lines(ledger) if spent else []
        attempts: list[Attempt] = []
        while True:
            if self._stopping.is_set() and attempts:
                break
            attempt = self._attempt(incident, spent + 1, history)
            attempts.append(attempt)
            if not attempt.applied or attempt.fixed or not attempt.restored:
                break
            if attempt.verdict is not None and attempt.verdict.kind is VerdictKind.INCONCLUSIVE:
                break
            spent = attempt.number
            history.append(f"attempt {attempt.number}: {attempt.summary()}; the snapshot was restored")
            if spent >= self.settings.max_attempts:
                break
        return self._conclude(incident, attempts, started)

    def _history_lines(self, ledger: Ledger) -> list[str]:
        return [f"attempt {note.attempt} at {note.at:%Y-%m-%d %H:%M} UTC: {note.outcome}: {note.summary}"
                for note in ledger.history[-6:]]

    def _attempt(self, incident: Incident, number: int, history: list[str]) -> Attempt:
        """One attempt: snapshot, journal, session, and (if something changed) verify, restore on failure."""
        ref, fingerprint, now = incident.workload, incident.fingerprint, self._clock()
        snapshot = self.store.save_snapshot(take_snapshot(self.access, ref, now), fingerprint)
        self._prune_snapshots()
        attempt = Attempt(number=number, snapshot=snapshot)
        journal = JournalEntry(
            fingerprint=fingerprint, incident=incident, workload=ref, attempt=number,
            max_attempts=self.settings.max_attempts, phase=Phase.SNAPSHOTTED, snapshot_id=snapshot.id,
            snapshot_generation=snapshot.generation, expected_generation=snapshot.generation, owner=self.identity,
            started_at=now, updated_at=now,
        )
        self.store.write_journal(journal)
        self.events.record(snapshot.workload, "Remediating",
                           f"incident {incident.id} ({incident.kind.value}): attempt {number} of "
                           f"{self.settings.max_attempts}; snapshot {snapshot.id} taken before any change")

        def count(ledger: Ledger) -> None:  # counted before anything can change: a crash cannot reset it
            ledger.attempts, ledger.last_attempt_at = number, now

        self.store.update_ledger(fingerprint, ref, count)
        journal.phase = Phase.APPLYING
        self.store.write_journal(journal)

        fence = Fence(snapshot.generation)
        holder: dict[str, WriteTools] = {}

        def applied(record: ActionRecord) -> None:
            if (record.target.kind, record.target.name) == (ref.kind, ref.name):
                fence.advance(self._written_generation(holder.get("tools"), ref))
            journal.expected_generation = fence.generation
            journal.actions.append(record)
            self.store.write_journal(journal)
            self.events.record(record.target if record.target != ref else snapshot.workload, "FixApplied",
                               f"incident {incident.id}, attempt {number}: {record.summary}")

        scope = IncidentScope.of(ref)
        guard = FencedGuard(self.settings, scope, budget=self.budget, fence=fence)
        recorder = AttemptRecorder(applied)
        write_tools = WriteTools(self.access, guard, recorder)
        holder["tools"] = write_tools
        read_tools = ReadTools(self.access, scope)
        context = self._context_builder(incident, read_tools, history)
        attempt.result = self._run_session(incident, context, read_tools, write_tools, self.settings)
        attempt.records = recorder.records()
        attempt.applied = any(r.status is ActionStatus.APPLIED for r in attempt.records)
        journal.actions = list(attempt.records)
        if not attempt.applied:
            def refund(ledger: Ledger) -> None:  # nothing changed: the attempt is given back
                ledger.attempts = max(0, number - 1)
                ledger.note(AttemptNote(attempt=number, incident_id=incident.id, at=now, outcome="no change",
                                        summary=attempt.result.escalation_reason or "" if attempt.result else ""))

            self.store.update_ledger(fingerprint, ref, refund)
            journal.phase = Phase.DONE
            self.store.write_journal(journal)
            return attempt

        self.guardrails.note_change(ref)
        journal.phase, journal.expected_generation = Phase.VERIFYING, fence.generation
        self.store.write_journal(journal)
        attempt.verdict = self.judge.verify(Baseline.of(ref, snapshot.workload), cancel=self._abort)
        journal.verification = attempt.verdict.text()
        current = self._read(ref)
        if attempt.verdict.ok:
            self._mark_fixed(incident, snapshot, current, attempt.summary())
            journal.phase = Phase.DONE
            self.store.write_journal(journal)
            self.events.record(current or ref, "Remediated",
                               f"incident {incident.id}: attempt {number} verified: {attempt.verdict.reason}")
            return attempt

        self.events.record(current or ref, "VerificationFailed",
                           f"incident {incident.id}, attempt {number}: {attempt.verdict.reason}; restoring the "
                           f"snapshot {snapshot.id}", warning=True)
        journal.phase = Phase.ROLLING_BACK
        self.store.write_journal(journal)
        self._restore(attempt, guard, fence.generation)
        journal.actions = list(attempt.records)
        self._note_attempt(incident, attempt, now)
        journal.phase = Phase.ROLLED_BACK
        self.store.write_journal(journal)
        return attempt

    @staticmethod
    def _written_generation(write_tools: WriteTools | None, ref: ObjectRef) -> int | None:
        """The generation AMOS's own write produced, as the write tools saw it in the API's answer."""
        return write_tools.written_generation(ref) if write_tools is not None else None

    def _restore(self, attempt: Attempt, guard: PolicyGuard, expected_generation: int | None) -> None:
        snapshot, ref = attempt.snapshot, attempt.snapshot.target
        attempt.restore = restore_snapshot(self.access, guard, snapshot, expected_generation)
        if attempt.restore.record is not None:
            attempt.records.append(attempt.restore.record)
        if attempt.restore.ok and attempt.restore.changed:
            self.guardrails.note_change(ref)
            attempt.restore_verdict = self.judge.verify_restore(snapshot)
        target = self._read(ref) or ref
        if attempt.restored:
            self.events.record(target, "RolledBack", f"attempt {attempt.number}: {attempt.restore.reason} "
                                                     f"(snapshot {snapshot.id})")
        else:
            why = attempt.restore.reason
            if attempt.restore_verdict is not None and not attempt.restore_verdict.ok:
                why += f"; {attempt.restore_verdict.reason}"
            self.events.record(target, "RollbackConflict" if attempt.restore.conflict else "RollbackFailed",
                               f"attempt {attempt.number}: {why}", warning=True)

    def _note_attempt(self, incident: Incident, attempt: Attempt, at: datetime) -> None:
        outcome = "rolled back" if attempt.restored else "not rolled back"
        note = AttemptNote(attempt=attempt.number, incident_id=incident.id, at=at, outcome=outcome,
                           summary=attempt.summary()[:500])
        self.store.update_ledger(incident.fingerprint, incident.workload, lambda ledger: ledger.note(note))

    def _mark_fixed(self, incident: Incident, snapshot: Snapshot, current: dict[str, Any] | None,
                    summary: str) -> None:
        now = self._clock()

        def fixed(ledger: Ledger) -> None:
            ledger.note(AttemptNote(attempt=max(1, ledger.attempts), incident_id=incident.id, at=now, outcome="fixed",
                                    summary=summary[:500]))
            ledger.attempts, ledger.escalated_incident = 0, None

        self.store.update_ledger(incident.fingerprint, incident.workload, fixed)
        self.guardrails.note_change(incident.workload)
        if current is not None:
            self.guardrails.watch_fix(incident.workload, FixWatch(
                incident=incident, fixed_at=now, before_hash=template_hash(snapshot.workload),
                after_hash=template_hash(current), summary=summary[:500]))

    def _conclude(self, incident: Incident, attempts: list[Attempt], started: datetime) -> IncidentReport:
        last = attempts[-1]
        records = [record for attempt in attempts for record in attempt.records]
        verification = "\n".join(f"attempt {a.number}: {a.verdict.text()}" for a in attempts if a.verdict)
        rolled_back = any(a.restore is not None and a.restore.changed for a in attempts)
        ref = incident.workload
        common: dict[str, Any] = {"started": started, "attempt": last.number, "result": last.result,
                                  "records": records, "verification": verification, "rolled_back": rolled_back}
        block_reason: str | None = None
        if last.fixed:
            report = self._report(incident, Outcome.FIXED, **common)
        elif not last.applied:
            result = last.result
            if result is not None and result.outcome_hint == "recommend":
                report = self._report(incident, Outcome.RECOMMENDED, **common,
                                      escalation_reason="AMOS only recommends for this incident")
            else:
                reason = (result.escalation_reason if result else None) or "the agent session changed nothing"
                if len(attempts) > 1:
                    reason = f"after {len(attempts) - 1} rolled-back attempt(s): {reason}"
                report = self._report(incident, Outcome.ESCALATED, **common, escalation_reason=reason)
        elif not last.restored:
            restore = last.restore
            why = restore.reason if restore else "the change could not be rolled back"
            if last.restore_verdict is not None and not last.restore_verdict.ok:
                why = f"{why}; {last.restore_verdict.reason}"
            block_reason = f"the fix did not help and could not be rolled back: {why}"
            report = self._report(incident, Outcome.ESCALATED, **common, escalation_reason=block_reason)
        elif last.verdict is not None and last.verdict.reason == INTERRUPTED:
            report = self._report(incident, Outcome.ROLLED_BACK, **common,
                                  escalation_reason="AMOS was stopping before the fix could be verified; the "
                                                    "snapshot was restored and AMOS will try again after a restart")
        elif last.verdict is not None and last.verdict.kind is VerdictKind.INCONCLUSIVE:
            block_reason = f"verification was inconclusive ({last.verdict.reason}); the change was rolled back"
            report = self._report(incident, Outcome.INCONCLUSIVE, **common, escalation_reason=block_reason)
        elif last.number >= self.settings.max_attempts:
            block_reason = (f"the fix did not help in {last.number} attempt(s); each change was rolled back to "
                            "the snapshot taken before it")
            report = self._report(incident, Outcome.ESCALATED, **common, escalation_reason=block_reason)
            self.store.update_ledger(incident.fingerprint, ref,
                                     lambda ledger: setattr(ledger, "escalated_incident", incident.id))
        else:
            report = self._report(incident, Outcome.ROLLED_BACK, **common,
                                  escalation_reason="AMOS stopped before its next attempt")
        report.model_calls = sum(a.result.model_calls for a in attempts if a.result is not None)
        report.tokens = sum(a.result.tokens for a in attempts if a.result is not None)
        if block_reason is not None:
            self.guardrails.block(ref, block_reason)
        journal = self.store.read_journal(incident.fingerprint)
        if journal is not None and journal.phase in TERMINAL_PHASES:
            journal.report = report
            self.store.write_journal(journal)
        return self._finish(report, self._read(ref) or ref, journal_fingerprint=incident.fingerprint)

    # --- reports ---------------------------------------------------------------------------------------------

    def _report(self, incident: Incident, outcome: Outcome, *, started: datetime, attempt: int,
                result: SessionResult | None = None, records: list[ActionRecord] | None = None,
                verification: str = "", rolled_back: bool = False, escalation_reason: str | None = None,
                human_steps: list[str] | None = None) -> IncidentReport:
        diagnosis = result.diagnosis if result is not None else None
        steps = list(diagnosis.human_steps if diagnosis else []) + list(human_steps or [])
        return IncidentReport(
            incident=incident, outcome=outcome, attempt=attempt, max_attempts=self.settings.max_attempts,
            root_cause=diagnosis.root_cause if diagnosis else "",
            category=diagnosis.category if diagnosis else "",
            confidence=diagnosis.confidence if diagnosis else None,
            evidence=list(diagnosis.evidence) if diagnosis else [],
            actions=list(records or []), verification=verification, rolled_back=rolled_back,
            escalation_reason=escalation_reason if outcome is not Outcome.FIXED else None,
            human_steps=list(dict.fromkeys(steps)), model=result.model if result is not None else "",
            model_calls=result.model_calls if result is not None else 0,
            tokens=result.tokens if result is not None else 0,
            started_at=started, finished_at=self._clock(),
        )

    def _finish(self, report: IncidentReport, target: ObjectRef | dict[str, Any],
                journal_fingerprint: str | None = None) -> IncidentReport:
        """Record the Event, send the report (a mail failure never stops the loop), close the journal."""
        warning = report.outcome in (Outcome.ESCALATED, Outcome.INCONCLUSIVE, Outcome.ROLLED_BACK)
        reason = {Outcome.FIXED: "Fixed", Outcome.ROLLED_BACK: "RolledBack", Outcome.ESCALATED: "Escalated",
                  Outcome.RECOMMENDED: "Recommended", Outcome.INCONCLUSIVE: "Escalated"}[report.outcome]
        message = f"incident {report.incident.id} ({report.incident.kind.value}): {report.outcome.value}"
        if report.escalation_reason:
            message += f": {report.escalation_reason}"
        self.events.record(target, reason, message, warning=warning, action="Report")
        self._deliver(report)
        if journal_fingerprint is not None:
            try:
                self.store.delete_journal(journal_fingerprint)
            except Exception:
                log.exception("could not delete the journal entry of %s", journal_fingerprint)
        return report

    def _deliver(self, report: IncidentReport) -> None:
        self.reports.append(report)
        log.info("incident %s: %s", report.incident.id, report.subject)
        if self.mailer is not None:
            try:
                delivery = self.mailer.send_report(report, self.redactor)
                self.deliveries.append(delivery)
            except Exception:  # a mail that cannot be sent never stops the loop
                log.exception("incident %s: the report could not be sent", report.incident.id)
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:
                log.exception("on_report callback failed")

    # --- sessions ----------------------------------------------------------------------------------------------

    def _run_session(self, incident: Incident, context: Any, read_tools: Any, write_tools: Any,
                     settings: Settings) -> SessionResult:
        kwargs = {"model": self._model} if self._model is not None else {}
        try:
            outcome = self._session_runner(incident, context, read_tools, write_tools, settings, **kwargs)
            if inspect.isawaitable(outcome):
                outcome = asyncio.run(_awaited(outcome))
            assert isinstance(outcome, SessionResult)
            return outcome
        except Exception as error:  # a session that blows up escalates; whatever it applied is verified
            log.exception("incident %s: the agent session failed", incident.id)
            return SessionResult(outcome_hint="escalate",
                                 escalation_reason=f"the agent session failed: {type(error).__name__}: {error}")

    def _prune_snapshots(self) -> None:
        try:
            self.store.prune_snapshots(self.settings.snapshot_retention)
        except Exception:
            log.exception("could not prune old snapshots")

    # --- reverted fixes --------------------------------------------------------------------------------------

    def check_reverts(self) -> list[IncidentReport]:
        """Escalate every verified fix whose pod template went back to what it was before the fix."""
        reports = []
        for state in self.store.watched_fixes():
            with self._lock:
                busy = state.workload in self._active
            if busy:
                continue
            report = self._check_revert_of(state.workload, self._read(state.workload), state.fix)
            if report is not None:
                reports.append(report)
        return reports

    def _check_revert_of(self, ref: ObjectRef, workload: dict[str, Any] | None,
                         watch: FixWatch | None = None) -> IncidentReport | None:
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
        reason = (f"the fix AMOS verified at {watch.fixed_at:%Y-%m-%d %H:%M:%S} UTC ({watch.summary}) was reverted: "
                  "the pod template is back to what it was before. Something (GitOps sync, a deploy pipeline, a "
                  "person) puts it back; AMOS does not fight it")
        self.guardrails.block(ref, "the fix was reverted")
        with incident_scope(watch.incident.id):
            report = self._report(watch.incident, Outcome.ESCALATED, started=self._clock(), attempt=0,
                                  escalation_reason=reason,
                                  human_steps=[f"Find out what reverted {ref} and make the fix there"])
            self.events.record(workload or ref, "FixReverted", reason, warning=True)
            return self._finish(report, workload or ref)

    # --- recovery --------------------------------------------------------------------------------------------

    def recover(self) -> list[IncidentReport]:
        """Finish or roll back every remediation a previous process left unfinished (even after kill -9)."""
        reports = []
        for entry in self.store.journals():
            with incident_scope(entry.incident.id):
                try:
                    report = self._recover(entry)
                except Exception:
                    log.exception("could not recover the remediation of incident %s", entry.incident.id)
                    continue
            if report is not None:
                reports.append(report)
        return reports

    def _recover(self, entry: JournalEntry) -> IncidentReport | None:
        ref, incident, fingerprint = entry.workload, entry.incident, entry.fingerprint
        started = self._clock()
        log.warning("recovering incident %s: journal phase %s (attempt %d, by %s)", incident.id, entry.phase.value,
                    entry.attempt, entry.owner)
        if entry.phase in TERMINAL_PHASES:  # finished; the report may not have gone out (at least once)
            applied = any(r.status is ActionStatus.APPLIED for r in entry.actions)
            if entry.report is None and entry.phase is Phase.DONE and not applied:
                self.store.delete_journal(fingerprint)
                return None
            if entry.report is not None:
                report = entry.report
            elif entry.phase is Phase.DONE and entry.verification.startswith(VerdictKind.SUCCESS.value):
                report = self._report(incident, Outcome.FIXED, started=started, attempt=entry.attempt,
                                      records=entry.actions, verification=entry.verification)
            else:
                report = self._report(incident, Outcome.ROLLED_BACK, started=started, attempt=entry.attempt,
                                      records=entry.actions, verification=entry.verification,
                                      rolled_back=entry.phase is Phase.ROLLED_BACK,
                                      escalation_reason="AMOS restarted before it could report this attempt")
            return self._finish(report, self._read(ref) or ref, journal_fingerprint=fingerprint)
        if entry.phase is Phase.SNAPSHOTTED:
            self.store.delete_journal(fingerprint)  # nothing was changed yet
            return None
        snapshot = self.store.load_snapshot(entry.snapshot_id)
        current = self._read(ref)

        def escalate(reason: str, *, block: bool = True) -> IncidentReport:
            if block:
                self.guardrails.block(ref, reason)
            report = self._report(incident, Outcome.ESCALATED, started=started, attempt=entry.attempt,
                                  records=entry.actions, verification=entry.verification, escalation_reason=reason)
            return self._finish(report, current or ref, journal_fingerprint=fingerprint)

        if snapshot is None:
            return escalate(f"AMOS restarted during a fix and its snapshot {entry.snapshot_id} is gone; "
                            "the workload was left as it is")
        if current is None:
            return escalate(f"{ref} was deleted during the fix; nothing to finish", block=False)
        expected = entry.expected_generation
        generation = _generation(current)
        if entry.phase is Phase.APPLYING and same_spec(current, snapshot.workload):
            log.info("incident %s: the interrupted session changed nothing", incident.id)
            self.store.delete_journal(fingerprint)  # the attempt stays counted
            return None
        if generation != expected:
            foreign = foreign_spec_writers(current, snapshot.taken_at)
            if foreign:
                return escalate(f"AMOS restarted during a fix and {ref} was also changed by someone else "
                                f"({', '.join(foreign)}); AMOS leaves it as it is")
            expected = generation
        guard = PolicyGuard(self.settings, IncidentScope.of(ref), budget=self.budget)
        attempt = Attempt(number=entry.attempt, snapshot=snapshot, records=list(entry.actions), applied=True)
        if entry.phase in (Phase.APPLYING, Phase.VERIFYING):
            entry.phase, entry.expected_generation = Phase.VERIFYING, expected
            self.store.write_journal(entry)
            attempt.verdict = self.judge.verify(Baseline.of(ref, snapshot.workload), cancel=self._abort)
            entry.verification = f"after AMOS restarted: {attempt.verdict.text()}"
            if attempt.verdict.ok:
                current = self._read(ref)
                self._mark_fixed(incident, snapshot, current, attempt.summary())
                entry.phase = Phase.DONE
                report = self._report(incident, Outcome.FIXED, started=started, attempt=entry.attempt,
                                      records=entry.actions, verification=entry.verification)
                entry.report = report
                self.store.write_journal(entry)
                return self._finish(report, current or ref, journal_fingerprint=fingerprint)
        entry.phase = Phase.ROLLING_BACK
        self.store.write_journal(entry)
        self._restore(attempt, guard, expected)
        entry.actions = attempt.records
        self._note_attempt(incident, attempt, started)
        spent = self.store.ledger(fingerprint).spent(self._clock(), self.settings.workload_block_seconds)
        verification = entry.verification or "the interrupted attempt was not verified"
        if not attempt.restored:
            why = attempt.restore.reason if attempt.restore else "not restored"
            self.guardrails.block(ref, why)
            report = self._report(incident, Outcome.ESCALATED, started=started, attempt=entry.attempt,
                                  records=attempt.records, verification=verification,
                                  escalation_reason=f"AMOS restarted during a fix that it could not finish: {why}")
        elif spent >= self.settings.max_attempts:
            reason = (f"AMOS restarted during attempt {entry.attempt}, which did not hold and was rolled back; "
                      "no attempt is left")
            self.guardrails.block(ref, reason)
            self.store.update_ledger(fingerprint, ref, lambda ledger: setattr(ledger, "escalated_incident", incident.id))
            report = self._report(incident, Outcome.ESCALATED, started=started, attempt=entry.attempt,
                                  records=attempt.records, verification=verification, rolled_back=True,
                                  escalation_reason=reason)
        else:
            report = self._report(incident, Outcome.ROLLED_BACK, started=started, attempt=entry.attempt,
                                  records=attempt.records, verification=verification,
                                  rolled_back=bool(attempt.restore and attempt.restore.changed),
                                  escalation_reason=("AMOS restarted during this attempt, which could not be "
                                                     "verified; the snapshot was restored. AMOS tries again if "
                                                     "the fault persists"))
        entry.phase, entry.report = Phase.ROLLED_BACK, report
        self.store.write_journal(entry)
        return self._finish(report, self._read(ref) or ref, journal_fingerprint=fingerprint)

    def _after_crash(self, incident: Incident, error: Exception) -> IncidentReport | None:
        """The loop itself failed mid-incident: finish or roll back what the journal says, else escalate."""
        try:
            entry = self.store.read_journal(incident.fingerprint)
            if entry is not None and entry.phase not in TERMINAL_PHASES and entry.phase is not Phase.SNAPSHOTTED:
                return self._recover(entry)
            if entry is not None:
                self.store.delete_journal(incident.fingerprint)
        except Exception:
            log.exception("incident %s: recovery after the failure failed too", incident.id)
        report = self._report(incident, Outcome.ESCALATED, started=self._clock(), attempt=0,
                              escalation_reason=f"AMOS failed while handling it: {type(error).__name__}: {error}")
        self._deliver(report)
        return report


async def _awaited(value: Awaitable[SessionResult]) -> SessionResult:
    return await value
