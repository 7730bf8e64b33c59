"""Fences around every write an attempt makes: leadership, the spec generation, and failed changes.

- Leadership: a replica that no longer holds the Lease (or cannot prove it still does) writes
  nothing, not even a journal step; a paused leader resuming after its lease ran out stops at once.
- Generation: the workload's spec is still as AMOS last saw or left it, so a person's edit between
  the snapshot and the fix (or between two fixes) is never built on or overwritten.
- Failed changes: a change that already failed in an earlier attempt of this incident is not
  applied again; the incident escalates instead.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from core.actions import DeletePod, ProposedAction
from core.config import Settings
from core.report import ActionRecord, ActionStatus
from tools import objects
from tools.policy import ActionBudget, Decision, IncidentBaseline, IncidentScope, PolicyGuard, WorkloadHistory
from tools.write import ActionRecorder

log = logging.getLogger(__name__)

StillLeader = Callable[[], bool]


class LostLeadership(Exception):
    """This replica no longer holds the Lease: it must stop acting; the new leader's recovery takes over."""


def generation_of(obj: dict[str, Any] | None) -> int | None:
    value = objects.meta(obj or {}).get("generation")
    return int(value) if value is not None else None


def action_key(action: ProposedAction) -> str:
    """One spelling per action, as its applied record shows it, to recognise the same change proposed again."""
    return action.summary()


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
    """The policy guard plus the fences above; the policy's own rules run first."""

    def __init__(
        self,
        settings: Settings,
        scope: IncidentScope,
        *,
        budget: ActionBudget,
        fence: Fence,
        still_leader: StillLeader,
        failed_actions: frozenset[str] = frozenset(),
        baseline: IncidentBaseline | None = None,
    ) -> None:
        super().__init__(settings, scope, budget=budget, baseline=baseline)
        self.fence = fence
        self.still_leader = still_leader
        self.failed_actions = failed_actions

    def check(
        self, action: ProposedAction, target: dict[str, Any] | None, history: WorkloadHistory | None = None
    ) -> Decision:
        if not self.still_leader():
            return Decision(allowed=False, reason="this AMOS replica no longer holds the leader Lease")
        decision = super().check(action, target, history)
        if not decision.allowed:
            return decision
        refusal = self._fenced(action, target, history)
        if refusal is None:
            return decision
        if decision.reservation is not None:
            decision.reservation.release()  # the slot the policy reserved is not used
        return Decision(allowed=False, reason=refusal)

    def _fenced(
        self, action: ProposedAction, target: dict[str, Any] | None, history: WorkloadHistory | None
    ) -> str | None:
        if action_key(action) in self.failed_actions:
            return (
                "this exact change was applied in an earlier attempt of this incident and did not hold; "
                "AMOS does not repeat it"
            )
        workload = (history.workload if history is not None else None) if isinstance(action, DeletePod) else target
        expected, seen = self.fence.generation, generation_of(workload)
        if workload is not None and expected is not None and seen != expected:
            return (
                f"{self.scope.kind}/{self.scope.name} was changed by someone else since AMOS took its snapshot "
                f"(generation {seen}, expected {expected}); AMOS does not build on or overwrite that change"
            )
        return None

    def check_restore(self, target: dict[str, Any] | None) -> Decision:
        if not self.still_leader():
            return Decision(allowed=False, reason="this AMOS replica no longer holds the leader Lease")
        return super().check_restore(target)


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
