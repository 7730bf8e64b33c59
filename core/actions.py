"""What a model may propose: a closed set of typed actions, never a manifest.

A diagnosis carries `ProposedAction`s; code (`tools.policy.PolicyGuard`) decides
whether each one may run, and `tools.write.WriteTools` turns it into an API call. Each
action class is also the one definition of the write tool that applies it (see `Action`),
so a tool call parses into the very action a diagnosis proposes and the two compare as values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from core.config import Verb
from core.k8s import canonical_kind
from core.models import ObjectRef


def _kind(value: Any) -> Any:
    return canonical_kind(value) if isinstance(value, str) else value


# Kinds whose pod template a fix may change, and kinds that keep a rollout history to go back to.
WorkloadKind = Annotated[Literal["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"], BeforeValidator(_kind)]
RevisionedKind = Annotated[Literal["Deployment", "StatefulSet", "DaemonSet", "CronJob"], BeforeValidator(_kind)]
ScalableKind = Annotated[Literal["Deployment", "StatefulSet"], BeforeValidator(_kind)]
ProbeName = Annotated[
    Literal["liveness", "readiness", "startup"],
    BeforeValidator(lambda v: v.strip().lower().removesuffix("probe") if isinstance(v, str) else v),
]
Name = Annotated[str, Field(min_length=1, max_length=253)]
_KIND = "kind of the workload"
_CONTAINER = "container name"


class Action(BaseModel):
    """One typed change, and the model-facing write tool that applies it: a single definition for both.

    The class docstring is the tool's description, the fields (all but the `action` discriminator)
    are its parameters with their descriptions, `tool_name` its name, and `verb` the configured verb
    (`Settings.allowed_verbs`) the policy guard requires for it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tool_name: ClassVar[str]
    verb: ClassVar[Verb]

    action: str
    namespace: Name = Field(description="namespace of the workload")
    name: Name = Field(description="workload name")

    @model_validator(mode="before")
    @classmethod
    def _empty_means_unset(cls, data: Any) -> Any:
        """Models send "" for a parameter they mean to leave out; for an optional field that is "keep it"."""
        if not isinstance(data, dict):
            return data
        optional = {name for name, field in cls.model_fields.items() if field.default is None}
        return {key: value for key, value in data.items() if not (key in optional and value == "")}

    @property
    def target_kind(self) -> str:
        return str(getattr(self, "kind", "Deployment"))

    def tool_args(self) -> dict[str, Any]:
        """The arguments of the `tool_name` call that applies this action (unset values left out)."""
        return self.model_dump(mode="json", exclude={"action"}, exclude_none=True)

    def summary(self) -> str:
        return f"{self.action} {self.target_kind}/{self.name}"


class Rollback(Action):
    """Roll a workload back to an earlier revision's template, like `kubectl rollout undo`.

    A CronJob goes back to a job template that produced a successful Job. A known-bad revision is refused.
    """

    tool_name = "rollback_deployment"
    verb = Verb.ROLLBACK

    action: Literal["rollback"] = "rollback"
    kind: RevisionedKind = Field("Deployment", description=_KIND)
    to_revision: StrictInt | None = Field(
        None,
        ge=1,
        description="revision number from get_rollout_history (its rollback_target); "
        "empty means the newest known-good revision",
    )

    def summary(self) -> str:
        to = f"revision {self.to_revision}" if self.to_revision else "the previous revision"
        return f"roll back {self.kind}/{self.name} to {to}"


class SetImage(Action):
    """Set a container's image; an image no earlier revision of this workload ran goes to a person as a proposal."""

    tool_name = "set_image"
    verb = Verb.PATCH

    action: Literal["set_image"] = "set_image"
    kind: WorkloadKind = Field("Deployment", description=_KIND)
    container: Name = Field(description=_CONTAINER)
    image: Annotated[str, Field(min_length=1, max_length=512)] = Field(
        description="full image reference, exactly as in get_rollout_history"
    )

    def summary(self) -> str:
        return f"set image of container {self.container} of {self.kind}/{self.name} to {self.image}"


class SetResources(Action):
    """Change a container's memory/CPU limits or requests (e.g. raise the memory limit after OOMKilled).

    A value may grow to at most max_memory_factor times the current one; a limit never goes below the request.
    """

    tool_name = "set_resources"
    verb = Verb.PATCH

    action: Literal["set_resources"] = "set_resources"
    kind: WorkloadKind = Field("Deployment", description=_KIND)
    container: Name = Field(description=_CONTAINER)
    memory_limit: str | None = Field(
        None, description='new memory limit, a Kubernetes quantity like "512Mi"; empty to keep it'
    )
    memory_request: str | None = Field(None, description='new memory request, like "256Mi"; empty to keep it')
    cpu_limit: str | None = Field(None, description='new CPU limit, like "500m"; empty to keep it')
    cpu_request: str | None = Field(None, description='new CPU request, like "250m"; empty to keep it')

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


class SetEnv(Action):
    """Set one literal environment variable on an existing container (variables from Secrets are never replaced)."""

    tool_name = "set_env"
    verb = Verb.PATCH

    action: Literal["set_env"] = "set_env"
    kind: WorkloadKind = Field("Deployment", description=_KIND)
    container: Name = Field(description=_CONTAINER)
    env_name: Annotated[str, Field(min_length=1, max_length=256)] = Field(description="variable name")
    value: Annotated[str, Field(max_length=4096)] = Field(description="new literal value")

    def summary(self) -> str:
        return f"set env {self.env_name} of container {self.container} of {self.kind}/{self.name}"


class SetArgs(Action):
    """Replace a container's command and/or args (each list replaces the whole field)."""

    tool_name = "set_args"
    verb = Verb.PATCH

    action: Literal["set_args"] = "set_args"
    kind: WorkloadKind = Field("Deployment", description=_KIND)
    container: Name = Field(description=_CONTAINER)
    command: list[str] | None = Field(
        None, max_length=64, description="new command list; empty to keep the current one"
    )
    args: list[str] | None = Field(None, max_length=64, description="new args list; empty to keep the current ones")

    def summary(self) -> str:
        parts = []
        if self.command is not None:
            parts.append(f"command={self.command}")
        if self.args is not None:
            parts.append(f"args={self.args}")
        return f"set {' '.join(parts) or 'nothing'} on container {self.container} of {self.kind}/{self.name}"


# FixProbe timing fields -> the probe fields they set.
_PROBE_TIMINGS = {
    "initial_delay_seconds": "initialDelaySeconds",
    "period_seconds": "periodSeconds",
    "timeout_seconds": "timeoutSeconds",
    "failure_threshold": "failureThreshold",
    "success_threshold": "successThreshold",
}
_PROBE_HANDLERS = ("httpGet", "tcpSocket", "grpc")


class FixProbe(Action):
    """Adjust an existing liveness/readiness/startup probe's timing or HTTP path/port; a probe is never removed."""

    tool_name = "fix_probe"
    verb = Verb.PATCH

    action: Literal["fix_probe"] = "fix_probe"
    kind: WorkloadKind = Field("Deployment", description=_KIND)
    container: Name = Field(description=_CONTAINER)
    probe: ProbeName = Field(description="liveness, readiness or startup")
    initial_delay_seconds: StrictInt | None = Field(None, description="new initialDelaySeconds")
    period_seconds: StrictInt | None = Field(None, description="new periodSeconds")
    timeout_seconds: StrictInt | None = Field(None, description="new timeoutSeconds")
    failure_threshold: StrictInt | None = Field(None, description="new failureThreshold")
    success_threshold: StrictInt | None = Field(None, description="new successThreshold (1 unless a readiness probe)")
    http_path: str | None = Field(None, max_length=256, description="new httpGet path (only for an httpGet probe)")
    port: StrictInt | Annotated[str, Field(max_length=15)] | None = Field(
        None, description="new port (number or name) of the probe's existing handler (httpGet, tcpSocket or grpc)"
    )

    @property
    def field(self) -> str:
        return f"{self.probe}Probe"

    def patch_of(self, current: dict[str, Any]) -> dict[str, Any]:
        """The patch of the container's `current` probe: the timings, and path/port on the handler it has
        (httpGet when it has none, which the guard refuses: a handler kind is never changed)."""
        patch: dict[str, Any] = {
            key: getattr(self, name) for name, key in _PROBE_TIMINGS.items() if getattr(self, name) is not None
        }
        handler = {key: value for key, value in (("path", self.http_path), ("port", self.port)) if value is not None}
        if handler:
            patch[next((kind for kind in _PROBE_HANDLERS if kind in current), "httpGet")] = handler
        return patch

    def summary(self) -> str:
        fields = {**_PROBE_TIMINGS, "http_path": "path", "port": "port"}
        changes = ", ".join(
            f"{key}={getattr(self, name)}" for name, key in fields.items() if getattr(self, name) is not None
        )
        return f"patch {self.field} of container {self.container} of {self.kind}/{self.name}: {changes or 'nothing'}"


class Scale(Action):
    """Set a workload's replica count (at least 1, at most the configured maximum; scaling down goes to a person)."""

    tool_name = "scale"
    verb = Verb.SCALE

    action: Literal["scale"] = "scale"
    kind: ScalableKind = Field("Deployment", description=_KIND)
    replicas: StrictInt = Field(description="desired number of replicas")

    def summary(self) -> str:
        return f"scale {self.kind}/{self.name} to {self.replicas} replicas"


class DeletePod(Action):
    """Evict one pod of the incident's workload so its controller replaces it (PodDisruptionBudgets are honoured)."""

    tool_name = "delete_pod"
    verb = Verb.DELETE_POD

    action: Literal["delete_pod"] = "delete_pod"
    namespace: Name = Field(description="namespace of the pod")
    name: Name = Field(description="pod name")

    @property
    def target_kind(self) -> str:
        return "Pod"

    def summary(self) -> str:
        return f"evict Pod/{self.name}"


class RestartRollout(Action):
    """Restart a workload's pods with a rolling update, like `kubectl rollout restart`."""

    tool_name = "restart_rollout"
    verb = Verb.RESTART

    action: Literal["restart"] = "restart"
    kind: Annotated[Literal["Deployment", "StatefulSet", "DaemonSet"], BeforeValidator(_kind)] = Field(
        "Deployment", description=_KIND
    )

    def summary(self) -> str:
        return f"restart the rollout of {self.kind}/{self.name}"


ProposedAction = Annotated[
    Rollback | SetImage | SetResources | SetEnv | SetArgs | FixProbe | Scale | DeletePod | RestartRollout,
    Field(discriminator="action"),
]
PROPOSED_ACTION: TypeAdapter[ProposedAction] = TypeAdapter(ProposedAction)
ACTION_MODELS: tuple[type[ProposedAction], ...] = get_args(get_args(ProposedAction)[0])
TOOL_ACTIONS: dict[str, type[ProposedAction]] = {model.tool_name: model for model in ACTION_MODELS}


def parse_action(data: Any) -> ProposedAction:
    """Validate a model's action (a dict or JSON text); raises pydantic.ValidationError."""
    if isinstance(data, str | bytes):
        return PROPOSED_ACTION.validate_json(data)
    return PROPOSED_ACTION.validate_python(data)


def parse_call(tool: str, args: dict[str, Any]) -> ProposedAction:
    """The action a write-tool call applies; raises KeyError (not a write tool) or pydantic.ValidationError."""
    return TOOL_ACTIONS[tool].model_validate(args)


def described_call(tool: str, args: dict[str, Any]) -> tuple[str, ObjectRef, str]:
    """(verb, target, summary) of a write-tool call, for the record of its refusal even when it does not validate."""
    try:
        action = parse_call(tool, args)
    except ValidationError:
        model = TOOL_ACTIONS[tool]
        verb = str(model.model_fields["action"].default)
        kind = canonical_kind(str(args.get("kind") or ("Pod" if model is DeletePod else "Deployment")))
        target = ObjectRef(kind=kind, namespace=str(args.get("namespace") or "?"), name=str(args.get("name") or "?"))
        return verb, target, f"{verb} {target.kind}/{target.name}"
    target = ObjectRef(kind=action.target_kind, namespace=action.namespace, name=action.name)
    return action.action, target, action.summary()


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
