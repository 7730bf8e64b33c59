"""A session that applies given typed actions: a person's chosen fix, through the same attempt steps.

`adk web` (with writes enabled) and approved proposals hand AMOS a list of typed actions instead of
asking a model. They still go through everything an autonomous fix does: guard rails, ledger,
snapshot, journal, the policy guard and fences on each write, verification, restore on failure,
Events and a report. Only who decided what to change differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.session import SessionResult
from core.actions import Category, Diagnosis, ProposedAction
from core.config import Settings
from core.models import Incident


class GivenActions:
    """A `SessionRunner` that applies exactly `actions`, each through the write tools (policy and fences)."""

    def __init__(self, actions: Sequence[ProposedAction], requested_by: str, reason: str) -> None:
        self.actions = list(actions)
        self.requested_by = requested_by
        self.reason = reason

    def __call__(
        self, incident: Incident, context: Any, read_tools: Any, write_tools: Any, settings: Settings, **_: Any
    ) -> SessionResult:
        diagnosis = Diagnosis(
            root_cause=self.reason,
            category=Category.UNKNOWN,
            proposed_actions=self.actions,
            evidence=[f"requested by {self.requested_by}"],
            confidence=1.0,
        )
        if write_tools is None or settings.dry_run:
            return SessionResult(
                diagnosis=diagnosis, outcome_hint="recommend", escalation_reason="dry-run mode: nothing is applied"
            )
        for action in self.actions:
            write_tools.apply(action)
        return SessionResult(
            diagnosis=diagnosis,
            outcome_hint="remediated",
            model=f"requested by {self.requested_by}",
            summary=f"applied the fix {self.requested_by} chose",
        )
