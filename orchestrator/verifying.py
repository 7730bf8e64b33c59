"""VERIFYING: the judge watches the changed workload; a fix that holds is kept, one that does not is undone.

The verdict is journaled before anything acts on it, so a resumed attempt concludes as this one
would have. A verified fix resets the fault's attempt count and is watched for a revert; a fix that
someone else's write superseded while it was judged is not credited to AMOS. A change that failed
(the fault persisted) marks the revision it made known-bad, so no later attempt goes back to that
template under another revision number (a Deployment's rollback renumbers the revision it restores).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from orchestrator.assessment import Baseline
from orchestrator.attempt_run import AttemptRun
from orchestrator.durable import DurableState
from orchestrator.events import EventRecorder
from orchestrator.fencing import LostLeadership, generation_of
from orchestrator.guardrails import IncidentGate, template_hash
from orchestrator.knowngood import current_revision
from orchestrator.knowngood_store import KnownGoodStore
from orchestrator.records import AttemptNote, FixWatch, Ledger, Phase
from orchestrator.restore import foreign_spec_writers
from orchestrator.store import JournalClaimed
from orchestrator.verify import Judge, VerdictKind

log = logging.getLogger(__name__)


class VerifyStep:
    """The VERIFYING step: -> DONE (fixed, deferred or superseded) or ROLLING_BACK (the change did not help)."""

    def __init__(
        self,
        *,
        state: DurableState,
        judge: Judge,
        events: EventRecorder,
        guardrails: IncidentGate,
        known_good: KnownGoodStore,
        clock: Callable[[], datetime],
        abort: threading.Event,
    ) -> None:
        self.state = state
        self.judge = judge
        self.events = events
        self.guardrails = guardrails
        self.known_good = known_good
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
        if (
            verdict.kind is VerdictKind.FAILURE
            and current is not None
            and generation_of(current) == run.fence.generation
        ):
            self._mark_failed(run, current)  # AMOS's own change, and the fault persisted under it
        self.events.record(
            current or ref,
            "VerificationFailed",
            f"incident {incident.id}, attempt {attempt.number}: {verdict.reason}; restoring the "
            f"snapshot {attempt.snapshot.id}",
            warning=True,
        )
        return Phase.ROLLING_BACK

    def _mark_failed(self, run: AttemptRun, current: dict[str, Any]) -> None:
        """The revision the failed change made is known-bad (a mark; an unreadable store only loses the mark)."""
        incident, attempt = run.incident, run.attempt
        if template_hash(current) == template_hash(attempt.snapshot.workload):
            return  # the change did not touch the template (a scale, a pod eviction): nothing to mark
        note = f"incident {incident.id}: attempt {attempt.number} did not fix it"
        try:
            revision = current_revision(current)
            self.state.durably(
                "mark the failed revision bad", lambda: self.known_good.mark_bad(run.ref, revision, note=note)
            )
        except (LostLeadership, JournalClaimed):
            raise
        except Exception as error:  # noqa: BLE001 - the restore must still run
            log.warning("incident %s: could not mark the failed revision known-bad: %s", incident.id, error)

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
