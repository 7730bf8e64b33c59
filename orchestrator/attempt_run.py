"""What the steps of one attempt share while it runs: the incident, its journal entry, the attempt, the fence.

The journal entry is the durable half (recovery rebuilds a run from it); the rest lives in memory
for as long as the attempt's steps run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agents.session import SessionResult
from core.models import Incident, ObjectRef
from orchestrator.attempt import Attempt
from orchestrator.fencing import Fence
from orchestrator.records import JournalEntry
from tools.policy import IncidentBaseline

SessionRunner = Callable[..., SessionResult | Awaitable[SessionResult]]


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
