"""Every branch of the outcome logic, without a cluster: what an incident's attempts add up to."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agents.session import SessionResult
from core.models import ObjectRef
from core.report import ActionRecord, ActionStatus, Outcome
from orchestrator.attempt import Attempt
from orchestrator.outcome import conclude, should_retry
from orchestrator.restore import RestoreResult
from orchestrator.verify import Verdict, VerdictKind
from tools.snapshot import Snapshot

REF = ObjectRef(kind="Deployment", namespace="shop", name="web")
SNAPSHOT = Snapshot(id="s1", taken_at=datetime(2026, 1, 1, tzinfo=UTC), target=REF, workload={"kind": "Deployment"})
APPLIED = ActionRecord(
    verb="rollback", target=REF, summary="roll back Deployment/web to revision 1", status=ActionStatus.APPLIED
)
PROPOSED = ActionRecord(verb="set_env", target=REF, summary="set env DB_HOST", status=ActionStatus.PROPOSED)
OK = Verdict(kind=VerdictKind.SUCCESS, reason="every pod Ready")
FAILED = Verdict(kind=VerdictKind.FAILURE, reason="pods still crash")
UNSURE = Verdict(kind=VerdictKind.INCONCLUSIVE, reason="the rollout did not finish in time")
RESTORED = RestoreResult(ok=True, changed=True, reason="the snapshot was put back")
NOT_RESTORED = RestoreResult(ok=False, conflict=True, reason="conflict: changed by someone else")


def attempt(
    number: int = 1,
    *,
    applied: bool = True,
    verdict: Verdict | None = None,
    restore: RestoreResult | None = None,
    **extra: Any,
) -> Attempt:
    return Attempt(
        number=number,
        snapshot=SNAPSHOT,
        records=[APPLIED] if applied else [],
        applied=applied,
        verdict=verdict,
        restore=restore,
        **extra,
    )


def test_a_verified_fix_is_fixed() -> None:
    assert conclude([attempt(verdict=OK)], 2).outcome is Outcome.FIXED


def test_a_fix_that_a_person_changed_during_verification_is_not_claimed() -> None:
    found = conclude([attempt(verdict=OK, superseded_by="kubectl-edit at 12:00")], 2)
    assert found.outcome is Outcome.SUPERSEDED and "kubectl-edit" in (found.reason or "")


def test_nothing_applied_escalates_with_the_session_reason_after_earlier_attempts() -> None:
    first = attempt(1, verdict=FAILED, restore=RESTORED)
    second = attempt(2, applied=False, result=SessionResult(outcome_hint="escalate", escalation_reason="no idea"))
    found = conclude([first, second], 3)
    assert found.outcome is Outcome.ESCALATED and found.reason == "after 1 rolled-back attempt(s): no idea"
    assert found.block_reason is None


def test_a_session_that_only_recommends_is_recommended() -> None:
    found = conclude([attempt(applied=False, result=SessionResult(outcome_hint="recommend"))], 2)
    assert found.outcome is Outcome.RECOMMENDED


def test_values_outside_history_become_a_proposal_for_a_person() -> None:
    proposal = attempt(applied=False)
    proposal.records = [PROPOSED]
    found = conclude([proposal], 2)
    assert found.outcome is Outcome.RECOMMENDED and "never ran before" in (found.reason or "")


def test_a_failed_fix_that_cannot_be_rolled_back_escalates_and_blocks() -> None:
    found = conclude([attempt(verdict=FAILED, restore=NOT_RESTORED)], 2)
    assert found.outcome is Outcome.ESCALATED and found.block_reason is not None
    assert "could not be rolled back: conflict" in (found.reason or "")


def test_a_restore_that_does_not_heal_counts_as_not_rolled_back() -> None:
    bad_restore = Verdict(kind=VerdictKind.FAILURE, reason="the restored pods crash too")
    found = conclude([attempt(verdict=FAILED, restore=RESTORED, restore_verdict=bad_restore)], 2)
    assert found.outcome is Outcome.ESCALATED and "the restored pods crash too" in (found.reason or "")


def test_interrupted_verification_is_rolled_back_for_a_retry_after_restart() -> None:
    found = conclude([attempt(verdict=UNSURE, restore=RESTORED, interrupted=True)], 2)
    assert found.outcome is Outcome.ROLLED_BACK and found.block_reason is None


def test_inconclusive_verification_escalates_and_blocks() -> None:
    found = conclude([attempt(verdict=UNSURE, restore=RESTORED)], 2)
    assert found.outcome is Outcome.INCONCLUSIVE and found.block_reason is not None


def test_the_last_allowed_attempt_failing_escalates_once_and_blocks() -> None:
    found = conclude([attempt(1, verdict=FAILED, restore=RESTORED), attempt(2, verdict=FAILED, restore=RESTORED)], 2)
    assert found.outcome is Outcome.ESCALATED and found.attempts_spent and found.block_reason is not None
    assert "2 attempt(s)" in (found.reason or "")


def test_a_resumed_attempt_judged_failing_before_the_restart_is_rolled_back_and_says_what_the_judge_saw() -> None:
    found = conclude([attempt(1, verdict=FAILED, restore=RESTORED, resumed=True)], 2)
    assert found.outcome is Outcome.ROLLED_BACK
    assert "did not help (pods still crash)" in (found.reason or "") and "restarted" in (found.reason or "")
    assert "could not be verified" not in (found.reason or "")


def test_a_resumed_attempt_never_judged_is_rolled_back_as_not_verified() -> None:
    found = conclude([attempt(1, verdict=None, restore=RESTORED, resumed=True)], 2)
    assert found.outcome is Outcome.ROLLED_BACK and "could not be verified" in (found.reason or "")


def test_stopping_between_attempts_is_rolled_back() -> None:
    found = conclude([attempt(1, verdict=FAILED, restore=RESTORED)], 2)
    assert found.outcome is Outcome.ROLLED_BACK and "stopped before its next attempt" in (found.reason or "")


def test_conclude_needs_an_attempt() -> None:
    with pytest.raises(ValueError):
        conclude([], 2)


@pytest.mark.parametrize(
    ("made", "stopping", "expected"),
    [
        (attempt(1, verdict=FAILED, restore=RESTORED), False, True),
        (attempt(1, verdict=FAILED, restore=RESTORED), True, False),
        (attempt(2, verdict=FAILED, restore=RESTORED), False, False),
        (attempt(1, verdict=OK), False, False),
        (attempt(1, applied=False), False, False),
        (attempt(1, verdict=FAILED, restore=NOT_RESTORED), False, False),
        (attempt(1, verdict=UNSURE, restore=RESTORED), False, False),
        (attempt(1, verdict=UNSURE, restore=RESTORED, interrupted=True), False, False),
    ],
)
def test_another_attempt_follows_only_a_cleanly_restored_failure_with_attempts_left(
    made: Attempt, stopping: bool, expected: bool
) -> None:
    assert should_retry(made, 2, stopping) is expected
