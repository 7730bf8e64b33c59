"""What AMOS did about one incident, in a shape that e-mails, chat messages, webhooks, Events and metrics share."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum, StrEnum

from pydantic import BaseModel, Field

from core.models import FaultKind, Incident, ObjectRef


class Outcome(StrEnum):
    FIXED = "fixed"  # a change was applied and verified
    ROLLED_BACK = "rolled_back"  # a change did not help; the snapshot was restored (an attempt is spent)
    ESCALATED = "escalated"  # a human must act; nothing more will be tried
    RECOMMENDED = "recommended"  # dry-run or GitOps-managed: a proposal, no change
    INCONCLUSIVE = "inconclusive"  # verification could not tell; escalated
    APPROVAL_NEEDED = "approval_needed"  # a validated proposal waits for a person's approval; nothing changed
    SUPERSEDED = "superseded"  # healthy, but a person changed the spec during verification: not AMOS's fix


class Severity(IntEnum):
    """How urgently a person must look; channels filter and sort on it (higher is more urgent)."""

    INFO = 1  # a recommendation: nothing changed, nothing is waiting
    NOTICE = 2  # AMOS changed something and it worked (or is still trying)
    ACTION_REQUIRED = 3  # a person must act: escalation, approval, outage

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


_SEVERITY = {
    Outcome.FIXED: Severity.NOTICE,
    Outcome.ROLLED_BACK: Severity.NOTICE,
    Outcome.ESCALATED: Severity.ACTION_REQUIRED,
    Outcome.RECOMMENDED: Severity.INFO,
    Outcome.INCONCLUSIVE: Severity.ACTION_REQUIRED,
    Outcome.APPROVAL_NEEDED: Severity.ACTION_REQUIRED,
    Outcome.SUPERSEDED: Severity.NOTICE,
}


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


class AttemptRecord(BaseModel):
    """One attempt's actions and verdict, so a report never presents a rolled-back change as live."""

    number: int
    actions: list[ActionRecord] = Field(default_factory=list)
    verification: str = ""
    rolled_back: bool = False


class FailingWorkload(BaseModel):
    """One workload of a namespace outage, with its own short diagnosis."""

    workload: ObjectRef
    kind: FaultKind | None = None
    diagnosis: str = ""
    category: str = ""


CLUSTER_WIDE = "(cluster-wide)"  # the `namespace` of a storm across namespaces


class NamespaceOutage(BaseModel):
    """Every failing workload of a namespace (or, for a storm, of the cluster) AMOS will not act in, in one message."""

    namespace: str
    total_workloads: int
    failing: list[FailingWorkload] = Field(default_factory=list)

    @property
    def cluster_wide(self) -> bool:
        return self.namespace == CLUSTER_WIDE

    @property
    def scope(self) -> str:
        return "the cluster" if self.cluster_wide else f"namespace {self.namespace}"

    def label(self, item: FailingWorkload) -> str:
        """How one failing workload is named in the list: with its namespace when the list spans several."""
        return str(item.workload) if self.cluster_wide else f"{item.workload.kind}/{item.workload.name}"


class IncidentReport(BaseModel):
    """The story of one remediation attempt, as engineers will read it."""

    incident: Incident
    outcome: Outcome
    attempt: int
    max_attempts: int
    root_cause: str = ""
    category: str = Field(default="", description="the Diagnosis category, e.g. bad_image, oom, missing_config")
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
    spec_generation: int | None = None  # the workload's generation the report is about (folds repeated reports)
    attempts: list[AttemptRecord] = Field(
        default_factory=list, description="per attempt; when empty, `actions` and `verification` tell the story"
    )
    revision_before: int | None = Field(
        default=None, description="the workload's rollout revision before AMOS's first change (for the undo command)"
    )
    proposal_id: str | None = Field(
        default=None, description="the stored proposal an APPROVAL_NEEDED report asks about"
    )
    approved_by: str | None = Field(default=None, description="who approved the fix this report is about")
    outage: NamespaceOutage | None = None

    @property
    def subject(self) -> str:
        return f"[AMOS] {self.outcome.value}: {self.incident.title}"

    @property
    def severity(self) -> Severity:
        return Severity.ACTION_REQUIRED if self.outage is not None else _SEVERITY[self.outcome]
