"""VERIFYING: the judge watches the changed workload; a fix that holds is kept, one that does not is undone.

The verdict is journaled before anything acts on it, so a resumed attempt concludes as this one
would have. A verified fix resets the fault's attempt count and is watched for a revert; a fix that
someone else's write superseded while it was judged is not credited to AMOS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from orchestrator.assessment import Baseline
from orchestrator.attempt_run import AttemptRun
from orchestrator.durable import DurableState
from orchestrator.events import EventRecorder
from orchestrator.fencing import generation_of
from orchestrator.guardrails import IncidentGate, template_hash
from orchestrator.records import AttemptNote, FixWatch, Ledger, Phase
from orchestrator.restore import foreign_spec_writers
from orchestrator.verify import Judge, VerdictKind


class VerifyStep:
    """The VERIFYING step: -> DONE (fixed, deferred or superseded) or ROLLING_BACK (the change did not help)."""

    def __init__(
        self,
        *,
        state: DurableState,
        judge: Judge,
        events: EventRecorder,
        guardrails: IncidentGate,
        clock: Callable[[], datetime],
        abort: threading.Event,
    ) -> None:
        self.state = state
        self.judge = judge
        self.events = events
        self.guardrails = guardrails
        self.clock = clock
        self._abort = abort

    def verify(self, run: AttemptRun) -> Phase:
        attempt, ref, incident = run.attempt, run.ref, run.incident
        verdict = self.judge.verify(Baseline.of(ref, attempt.snapshot.workload), cancel=self._abort)
        attempt.verdict = verdict
        attempt.interrupted = self._abort.is_set() and not verdict.ok
        run.journal.verdict = verdict.model_dump(mode="json")
        self.state.journal(run, Phase.VERIFYING)  # the verdict is durable, and a newer owner stops this one here
        run.journal.verification = ("after AMOS restarted: " if attempt.resumed else "") + verdict.text()
        current = self.state.read(ref)
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

        self.state.durably(
            "mark fixed", lambda: self.state.store.update_ledger(incident.fingerprint, incident.workload, fixed)
        )
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
