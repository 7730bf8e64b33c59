"""What a model may propose: a closed set of typed actions, never a manifest.

A diagnosis carries `ProposedAction`s; code (`tools.policy.PolicyGuard`) decides
whether each one may run, and `tools.write.WriteTools` turns it into an API call.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, TypeAdapter

from core.config import Verb
from core.k8s import canonical_kind


def _kind(value: Any) -> Any:
    return canonical_kind(value) if isinstance(value, str) else value


# Kinds whose pod template a fix may change, and kinds that keep a rollout history to go back to.
WorkloadKind = Annotated[Literal["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"], BeforeValidator(_kind)]
RevisionedKind = Annotated[Literal["Deployment", "StatefulSet", "DaemonSet", "CronJob"], BeforeValidator(_kind)]
ScalableKind = Annotated[Literal["Deployment", "StatefulSet"], BeforeValidator(_kind)]
DeploymentKind = Annotated[Literal["Deployment"], BeforeValidator(_kind)]
ProbeName = Annotated[
    Literal["liveness", "readiness", "startup"],
    BeforeValidator(lambda v: v.strip().lower().removesuffix("probe") if isinstance(v, str) else v),
]
Name = Annotated[str, Field(min_length=1, max_length=253)]


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: Name
    name: Name

    @property
    def verb(self) -> Verb:
        return _VERBS[self.action]  # type: ignore[attr-defined]

    @property
    def target_kind(self) -> str:
        return str(getattr(self, "kind", "Deployment"))

    def summary(self) -> str:
        return f"{self.action} {self.target_kind}/{self.name}"  # type: ignore[attr-defined]


class Rollback(_Action):
    """Put back the pod template of an earlier revision (`kubectl rollout undo`); CronJobs: a job template
    AMOS saw produce a successful Job."""

    action: Literal["rollback"] = "rollback"
    kind: RevisionedKind = "Deployment"
    to_revision: StrictInt | None = Field(None, ge=1, description="revision to return to; the previous one when empty")

    def summary(self) -> str:
        to = f"revision {self.to_revision}" if self.to_revision else "the previous revision"
        return f"roll back {self.kind}/{self.name} to {to}"


class SetImage(_Action):
    action: Literal["set_image"] = "set_image"
    kind: WorkloadKind = "Deployment"
    container: Name
    image: Annotated[str, Field(min_length=1, max_length=512)]

    def summary(self) -> str:
        return f"set image of container {self.container} of {self.kind}/{self.name} to {self.image}"


class SetResources(_Action):
    action: Literal["set_resources"] = "set_resources"
    kind: WorkloadKind = "Deployment"
    container: Name
    memory_limit: str | None = None
    memory_request: str | None = None
    cpu_limit: str | None = None
    cpu_request: str | None = None

    def changes(self) -> dict[tuple[str, str], str]:
        """(section, resource) -> quantity, e.g. ("limits", "memory") -> "512Mi"."""
        values = {
            ("limits", "memory"): self.memory_limit,
            ("requests", "memory"): self.memory_request,
            ("limits", "cpu"): self.cpu_limit,
            ("requests", "cpu"): self.cpu_request,
        }
        return {key: value.strip() for key, value in values.items() if value is not None}

    def summary(self) -> str:
        parts = ", ".join(f"{resource} {section[:-1]}={value}" for (section, resource), value in self.changes().items())
        return f"set resources of container {self.container} of {self.kind}/{self.name}: {parts}"


class SetEnv(_Action):
    action: Literal["set_env"] = "set_env"
    kind: WorkloadKind = "Deployment"
    container: Name
    env_name: Annotated[str, Field(min_length=1, max_length=256)]
    value: Annotated[str, Field(max_length=4096)]

    def summary(self) -> str:
        return f"set env {self.env_name} of container {self.container} of {self.kind}/{self.name}"


class SetArgs(_Action):
    action: Literal["set_args"] = "set_args"
    kind: WorkloadKind = "Deployment"
    container: Name
    command: list[str] | None = Field(None, max_length=64)
    args: list[str] | None = Field(None, max_length=64)

    def summary(self) -> str:
        parts = []
        if self.command is not None:
            parts.append(f"command={self.command}")
        if self.args is not None:
            parts.append(f"args={self.args}")
        return f"set {' '.join(parts) or 'nothing'} on container {self.container} of {self.kind}/{self.name}"


class FixProbe(_Action):
    """Change the timing or the HTTP path/port of an existing probe; a probe is never removed."""

    action: Literal["fix_probe"] = "fix_probe"
    kind: WorkloadKind = "Deployment"
    container: Name
    probe: ProbeName
    patch: dict[str, Any]

    @property
    def field(self) -> str:
        return f"{self.probe}Probe"

    def summary(self) -> str:
        return f"patch {self.field} of container {self.container} of {self.kind}/{self.name}: {self.patch}"


class Scale(_Action):
    action: Literal["scale"] = "scale"
    kind: ScalableKind = "Deployment"
    replicas: StrictInt

    def summary(self) -> str:
        return f"scale {self.kind}/{self.name} to {self.replicas} replicas"


class DeletePod(_Action):
    """Evict one pod (its controller makes a new one); PodDisruptionBudgets hold."""

    action: Literal["delete_pod"] = "delete_pod"

    @property
    def target_kind(self) -> str:
        return "Pod"

    def summary(self) -> str:
        return f"evict Pod/{self.name}"


class RestartRollout(_Action):
    action: Literal["restart"] = "restart"
    kind: Annotated[Literal["Deployment", "StatefulSet", "DaemonSet"], BeforeValidator(_kind)] = "Deployment"

    def summary(self) -> str:
        return f"restart the rollout of {self.kind}/{self.name}"


ProposedAction = Annotated[
    Rollback | SetImage | SetResources | SetEnv | SetArgs | FixProbe | Scale | DeletePod | RestartRollout,
    Field(discriminator="action"),
]
PROPOSED_ACTION: TypeAdapter[ProposedAction] = TypeAdapter(ProposedAction)

_VERBS: dict[str, Verb] = {
    "rollback": Verb.ROLLBACK,
    "set_image": Verb.PATCH,
    "set_resources": Verb.PATCH,
    "set_env": Verb.PATCH,
    "set_args": Verb.PATCH,
    "fix_probe": Verb.PATCH,
    "scale": Verb.SCALE,
    "delete_pod": Verb.DELETE_POD,
    "restart": Verb.RESTART,
}


def parse_action(data: Any) -> ProposedAction:
    """Validate a model's action (a dict or JSON text); raises pydantic.ValidationError."""
    if isinstance(data, str | bytes):
        return PROPOSED_ACTION.validate_json(data)
    return PROPOSED_ACTION.validate_python(data)


class Category(StrEnum):
    """The root-cause class of a diagnosis; reports, scenarios and metrics branch on it."""

    BAD_IMAGE = "bad_image"
    BAD_COMMAND = "bad_command"
    BAD_ENV = "bad_env"
    OOM = "oom"
    MISSING_CONFIG = "missing_config"
    JOB_FAILURE = "job_failure"
    UNSCHEDULABLE = "unschedulable"
    QUOTA = "quota"  # ResourceQuota, LimitRange or admission refused the pods
    PROBE = "probe"  # liveness or readiness probe failing
    BAD_ROLLOUT = "bad_rollout"  # a new revision broke it; no finer class applies
    UNKNOWN = "unknown"


def _category(value: Any) -> Any:
    """An unknown category from a model is `unknown`, not a validation failure of the whole diagnosis."""
    if isinstance(value, str):
        text = value.strip().lower()
        return text if text in {c.value for c in Category} else Category.UNKNOWN.value
    return value


class Diagnosis(BaseModel):
    """A model's reading of an incident and what it proposes; code decides what runs."""

    root_cause: str
    category: Annotated[Category, BeforeValidator(_category)] = Field(
        Category.UNKNOWN, description=", ".join(c.value for c in Category)
    )
    evidence: list[str] = Field(default_factory=list)
    confidence: float = Field(0.0, ge=0.0, le=1.0)
    proposed_actions: list[ProposedAction] = Field(default_factory=list)
    escalate: bool = False
    escalation_reason: str | None = None
    human_steps: list[str] = Field(default_factory=list)
