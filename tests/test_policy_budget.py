"""Budgets reserve a slot in the check itself: concurrent sessions cannot overshoot, refusals give slots back,
and writes the API rejects still count toward the session limit."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from core.actions import RestartRollout, SetImage
from core.config import Settings
from tools.policy import ActionBudget, Decision, IncidentScope, PolicyGuard, WorkloadHistory

NS = "shop"
NOW = 50_000.0
ACTION = RestartRollout(namespace=NS, name="web")


def deployment() -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "uid": "uid-web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "a"}]},
            },
        },
    }


def guard(budget: ActionBudget, session_limit: int = 4) -> PolicyGuard:
    settings = Settings(actions_per_hour=budget.per_hour)
    return PolicyGuard(
        settings, IncidentScope(namespace=NS, kind="Deployment", name="web"), budget=budget, session_limit=session_limit
    )


def check(session: PolicyGuard, action: Any = ACTION) -> Decision:
    return session.check(action, deployment(), WorkloadHistory(workload=deployment()))


def budget_at(used: int, per_hour: int = 30, clock: list[float] | None = None) -> ActionBudget:
    now = clock or [NOW]
    return ActionBudget(per_hour, clock=lambda: now[0], times=[now[0] - 60 - i for i in range(used)])


def run_together(count: int, work: Any) -> list[Any]:
    """Each thread decides, then all wait until every one has decided before settling: the old check-then-note
    interleaving, forced without any sleep."""
    decided = threading.Barrier(count, timeout=30)
    results: list[Any] = [None] * count

    def one(index: int) -> None:
        results[index] = work(index, decided)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_four_sessions_at_29_of_30_only_one_passes() -> None:
    shared = budget_at(29)
    sessions = [guard(shared) for _ in range(4)]

    def work(index: int, decided: threading.Barrier) -> Decision:
        decision = check(sessions[index])
        decided.wait()  # nobody commits before everybody has checked
        if decision.allowed:
            assert decision.reservation is not None
            decision.reservation.commit()
        return decision

    decisions = run_together(4, work)
    assert sum(d.allowed for d in decisions) == 1
    assert all("hourly action limit" in d.reason for d in decisions if not d.allowed)
    assert shared.used() == 30 and shared.reserved() == 0


def test_one_session_shared_by_parallel_tool_calls_never_passes_its_limit() -> None:
    session = guard(budget_at(0), session_limit=4)

    def work(index: int, decided: threading.Barrier) -> Decision:
        decision = check(session)
        decided.wait()
        if decision.reservation is not None:
            decision.reservation.commit()
        return decision

    decisions = run_together(8, work)
    assert sum(d.allowed for d in decisions) == 4
    assert all("session action limit" in d.reason for d in decisions if not d.allowed)
    assert session.session_actions == 4


def test_a_released_slot_goes_back_to_everyone() -> None:
    shared = budget_at(29)
    first, second = guard(shared), guard(shared)
    held = check(first)
    assert held.allowed and shared.reserved() == 1
    assert "hourly action limit" in check(second).reason
    assert held.reservation is not None
    held.reservation.release()  # e.g. the snapshot before the write failed: nothing was sent
    assert shared.used() == 29 and shared.reserved() == 0 and first.session_actions == 0
    assert check(second).allowed


def test_writes_the_api_rejects_count_toward_the_session_but_not_the_hour() -> None:
    shared = budget_at(0)
    session = guard(shared, session_limit=2)
    for _ in range(2):
        decision = check(session)
        assert decision.reservation is not None
        decision.reservation.reject()
    assert "session action limit" in check(session).reason
    assert session.session_actions == 2 and shared.used() == 0 and shared.reserved() == 0


def test_a_reservation_settles_once() -> None:
    shared = budget_at(0)
    session = guard(shared)
    decision = check(session)
    assert decision.reservation is not None and not decision.reservation.settled
    decision.reservation.commit()
    decision.reservation.commit()
    decision.reservation.release()
    assert decision.reservation.settled
    assert shared.used() == 1 and shared.reserved() == 0 and session.session_actions == 1


def test_proposals_and_refusals_hold_no_slot() -> None:
    shared = budget_at(0)
    session = guard(shared)
    proposal = check(session, SetImage(namespace=NS, name="web", container="web", image="evil:1"))
    refusal = check(session, SetImage(namespace=NS, name="web", container="nobody", image="evil:1"))
    assert proposal.proposal and proposal.reservation is None
    assert not refusal.allowed and refusal.reservation is None
    assert shared.reserved() == 0 and session.session_actions == 0


def test_note_action_commits_the_open_reservation_instead_of_counting_twice() -> None:
    shared = budget_at(0)
    session = guard(shared)
    assert check(session).allowed
    session.note_action()  # the old call sequence: check, then note
    assert (session.session_actions, shared.used(), shared.reserved()) == (1, 1, 0)
    session.note_action()  # nothing open: counts anew, as before
    assert (session.session_actions, shared.used()) == (2, 2)


def test_an_unsettled_slot_expires_like_an_action() -> None:
    clock = [NOW]
    shared = budget_at(0, per_hour=1, clock=clock)
    assert guard(shared).check(ACTION, deployment(), WorkloadHistory(workload=deployment())).allowed
    assert "hourly action limit" in check(guard(shared)).reason
    clock[0] += 3601
    assert shared.reserved() == 0 and check(guard(shared)).allowed


def test_a_persisting_budget_sees_each_committed_action_once() -> None:
    """Like the cluster budget: `used` and `note` overridden; reserve/commit still go through them."""

    class Persisted(ActionBudget):
        def __init__(self) -> None:
            super().__init__(2)
            self.stored: list[float] = []

        def used(self) -> int:
            return len(self.stored)

        def note(self) -> None:
            self.stored.append(NOW)

    shared = Persisted()
    first = check(guard(shared))
    second = check(guard(shared))
    assert "hourly action limit" in check(guard(shared)).reason
    assert first.reservation is not None and second.reservation is not None
    first.reservation.commit()
    second.reservation.release()
    assert shared.stored == [NOW] and check(guard(shared)).allowed


def test_a_decision_is_one_of_three_shapes() -> None:
    with pytest.raises(ValueError):
        Decision(allowed=True, proposal=True, reason="x")
    assert Decision(allowed=False, reason="no").model_dump() == {"allowed": False, "reason": "no", "proposal": False}
