"""How an incident ends, decided from what its attempts did: pure functions, no cluster, no clock.

The incident handler and recovery both call `conclude`, so a resumed attempt ends exactly as an
uninterrupted one would. Each branch says which outcome, why, and whether the workload is blocked
(a person must look before AMOS touches it again).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from core.report import Outcome
from orchestrator.attempt import Attempt


class Conclusion(BaseModel):
    outcome: Outcome
    reason: str | None = None  # why a person is needed (None for a plain fix)
    block_reason: str | None = None  # set: block the workload for workload_block_seconds
    attempts_spent: bool = False  # the retry limit is reached: mark the ledger escalated (mailed once)


def _restart_note(attempt: Attempt) -> str:
    return "AMOS restarted during this attempt; " if attempt.resumed else ""


def conclude(attempts: Sequence[Attempt], max_attempts: int) -> Conclusion:
    """The outcome of an incident from its attempts (the last one decides; earlier ones were rolled back)."""
    if not attempts:
        raise ValueError("conclude needs at least one attempt")
    last = attempts[-1]
    earlier = len(attempts) - 1
    note = _restart_note(last)
    if last.fixed:
        if last.superseded_by:
            return Conclusion(
                outcome=Outcome.SUPERSEDED,
                reason=f"the workload is healthy, but {last.superseded_by} changed its spec while AMOS verified its "
                "own change, so AMOS does not claim the fix",
            )
        if last.deferred:
            return Conclusion(
                outcome=Outcome.FIXED,
                reason="the job template was restored; the CronJob's next run verifies it (no run fell inside the "
                "verification window, and AMOS never starts a run itself)",
            )
        return Conclusion(outcome=Outcome.FIXED)
    if not last.applied:
        result = last.result
        if last.proposals:
            return Conclusion(
                outcome=Outcome.RECOMMENDED,
                reason="the fix needs values this workload never ran before; a person must review and apply it",
            )
        if result is not None and result.outcome_hint == "recommend":
            return Conclusion(outcome=Outcome.RECOMMENDED, reason="AMOS only recommends for this incident")
        reason = (result.escalation_reason if result else None) or "the agent session changed nothing"
        if earlier:
            reason = f"after {earlier} rolled-back attempt(s): {reason}"
        return Conclusion(outcome=Outcome.ESCALATED, reason=note + reason)
    if not last.restored:
        why = last.restore.reason if last.restore else "the change could not be rolled back"
        if last.restore_verdict is not None and not last.restore_verdict.ok:
            why = f"{why}; {last.restore_verdict.reason}"
        reason = f"{note}the fix did not help and could not be rolled back: {why}"
        return Conclusion(outcome=Outcome.ESCALATED, reason=reason, block_reason=reason)
    if last.interrupted:
        return Conclusion(
            outcome=Outcome.ROLLED_BACK,
            reason="AMOS was stopping before the fix could be verified; the snapshot was restored and AMOS will "
            "try again after a restart",
        )
    if last.inconclusive:
        assert last.verdict is not None
        reason = f"{note}verification was inconclusive ({last.verdict.reason}); the change was rolled back"
        return Conclusion(outcome=Outcome.INCONCLUSIVE, reason=reason, block_reason=reason)
    if last.number >= max_attempts:
        reason = (
            f"{note}the fix did not help in {last.number} attempt(s); each change was rolled back to the snapshot "
            "taken before it"
        )
        return Conclusion(outcome=Outcome.ESCALATED, reason=reason, block_reason=reason, attempts_spent=True)
    if last.resumed:
        if last.verdict is not None:  # judged before the restart; recovery finished the rollback
            why = f"the fix did not help ({last.verdict.reason}); AMOS restarted before the rollback was reported"
        else:  # recovery cannot judge a change it did not watch from the start
            why = "AMOS restarted during this attempt, which could not be verified"
        return Conclusion(
            outcome=Outcome.ROLLED_BACK,
            reason=f"{why}; the snapshot was restored. AMOS tries again if the fault persists",
        )
    return Conclusion(outcome=Outcome.ROLLED_BACK, reason="AMOS stopped before its next attempt")


def should_retry(attempt: Attempt, max_attempts: int, stopping: bool) -> bool:
    """Whether another attempt follows: the change was applied, did not help, was restored cleanly."""
    if stopping or not attempt.applied or attempt.fixed or not attempt.restored:
        return False
    if attempt.inconclusive or attempt.interrupted:
        return False
    return attempt.number < max_attempts
