"""What AMOS did about one incident, in a shape that e-mails, Events and metrics can share."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from core.models import Incident, ObjectRef


class Outcome(StrEnum):
    FIXED = "fixed"  # a change was applied and verified
    ROLLED_BACK = "rolled_back"  # a change did not help; the snapshot was restored (an attempt is spent)
    ESCALATED = "escalated"  # a human must act; nothing more will be tried
    RECOMMENDED = "recommended"  # dry-run or GitOps-managed: a proposal, no change
    INCONCLUSIVE = "inconclusive"  # verification could not tell; escalated


class ActionStatus(StrEnum):
    APPLIED = "applied"
    REFUSED = "refused"  # the policy guard said no
    DRY_RUN = "dry_run"  # validated by the API server, not persisted
    FAILED = "failed"  # the API server said no
    PROPOSED = "proposed"  # outside what the workload has run before: shown to a person with its diff, not applied


class ActionRecord(BaseModel):
    """One typed action and what became of it, with a before/after diff of the fields it touched."""

    verb: str
    target: ObjectRef
    summary: str
    status: ActionStatus
    reason: str = ""
    diff: str = ""


class IncidentReport(BaseModel):
    """The story of one remediation attempt, as engineers will read it."""

    incident: Incident
    outcome: Outcome
    attempt: int
    max_attempts: int
    root_cause: str = ""
    category: str = Field("", description="the Diagnosis category, e.g. bad_image, oom, missing_config")
    confidence: float | None = None
    evidence: list[str] = Field(default_factory=list)
    actions: list[ActionRecord] = Field(default_factory=list)
    verification: str = ""
    rolled_back: bool = False
    escalation_reason: str | None = None
    human_steps: list[str] = Field(default_factory=list)
    model: str = ""
    model_calls: int = 0
    tokens: int = 0
    started_at: datetime
    finished_at: datetime

    @property
    def subject(self) -> str:
        return f"[AMOS] {self.outcome.value}: {self.incident.title}"
