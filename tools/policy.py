"""The policy guard: plain code that decides whether a proposed action may touch the cluster.

The model proposes; this module decides (complete mediation). It is pure: the
caller passes the target object and the workload's ReplicaSet history it read,
so every rule can be tested without a cluster. A refusal says which rule refused.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes.utils import parse_quantity
from pydantic import BaseModel, ConfigDict, Field

from core.actions import (
    DeletePod,
    FixProbe,
    ProposedAction,
    RestartRollout,
    Rollback,
    Scale,
    SetArgs,
    SetEnv,
    SetImage,
    SetResources,
)
from core.config import Settings
from core.models import Incident, ObjectRef
from tools import objects

DEFAULT_SESSION_ACTIONS = 4  # one session is one attempt: a fix rarely needs more than two changes
HOUR_SECONDS = 3600.0
MAX_ARG_CHARS = 1024

# Probe fields a fix may change, with inclusive bounds; handlers only keep their kind (no exec).
PROBE_TIMINGS: dict[str, tuple[int, int]] = {
    "initialDelaySeconds": (0, 600),
    "periodSeconds": (1, 300),
    "timeoutSeconds": (1, 120),
    "failureThreshold": (1, 30),
    "successThreshold": (1, 10),
}
PROBE_HANDLERS: dict[str, set[str]] = {"httpGet": {"path", "port"}, "tcpSocket": {"port"}, "grpc": {"port"}}


class IncidentScope(BaseModel):
    """The one workload (and its pods and ReplicaSets) a remediation session may touch."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    kind: str
    name: str

    @classmethod
    def of(cls, workload: ObjectRef) -> IncidentScope:
        return cls(namespace=workload.namespace, kind=workload.kind, name=workload.name)

    @classmethod
    def from_incident(cls, incident: Incident) -> IncidentScope:
        return cls.of(incident.workload)

    @property
    def workload(self) -> ObjectRef:
        return ObjectRef(kind=self.kind, namespace=self.namespace, name=self.name)

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} -n {self.namespace}"


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    allowed: bool
    reason: str


class WorkloadHistory(BaseModel):
    """The incident's workload and the ReplicaSets it owns (its rollout history), as read by the caller."""

    workload: dict[str, Any] | None = None
    replicasets: list[dict[str, Any]] = Field(default_factory=list)

    def owned_replicasets(self) -> list[dict[str, Any]]:
        if self.workload is None:
            return []
        workload = self.workload
        return [rs for rs in self.replicasets if objects.owned_by(rs, workload)]

    def revisions(self) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for rs in self.owned_replicasets():
            number = objects.revision(rs)
            if number is not None:
                found[number] = rs
        return found

    def images(self, container: str) -> set[str]:
        """Images this container ran in any revision of the workload."""
        found: set[str] = set()
        for rs in self.owned_replicasets():
            match = objects.find_container(rs, container)
            if match is not None and match[1].get("image"):
                found.add(str(match[1]["image"]))
        return found


class ActionBudget:
    """Actions in the last hour, shared by every session; thread-safe.

    `times` seeds it with earlier actions (wall-clock seconds), e.g. counts kept in the cluster.
    """

    def __init__(self, per_hour: int, *, clock: Callable[[], float] = time.time, times: Iterable[float] = ()) -> None:
        self.per_hour = per_hour
        self._clock = clock
        self._times: deque[float] = deque(sorted(times))
        self._lock = threading.Lock()

    def _expire(self) -> None:
        horizon = self._clock() - HOUR_SECONDS
        while self._times and self._times[0] <= horizon:
            self._times.popleft()

    def used(self) -> int:
        with self._lock:
            self._expire()
            return len(self._times)

    def note(self) -> None:
        with self._lock:
            self._expire()
            self._times.append(self._clock())

    def times(self) -> list[float]:
        with self._lock:
            self._expire()
            return list(self._times)


def _quantity(value: str) -> Decimal:
    try:
        return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, InvalidOperation) as error:
        raise _Refused(f"{value!r} is not a Kubernetes quantity") from error


class _Refused(Exception):
    """A rule said no; the message is the reason."""


class PolicyGuard:
    """Says yes or no to each proposed action, before any mutating API call, and counts what ran.

    Rules, in order: verb allowed by config; namespace watched, not excluded, not AMOS's own;
    target is the incident's workload (or one of its pods); target not protected; session and
    hourly action limits; then the action's own field allowlist and bounds.
    """

    def __init__(
        self,
        settings: Settings,
        scope: IncidentScope,
        *,
        budget: ActionBudget | None = None,
        session_limit: int = DEFAULT_SESSION_ACTIONS,
    ) -> None:
        self.settings = settings
        self.scope = scope
        self.budget = budget or ActionBudget(settings.actions_per_hour)
        self.session_limit = session_limit
        self._session_actions = 0
        self._lock = threading.Lock()

    @property
    def session_actions(self) -> int:
        return self._session_actions

    def note_action(self) -> None:
        """Count one action that reached the API server (applied, dry-run or rejected there)."""
        with self._lock:
            self._session_actions += 1
        self.budget.note()

    # --- decisions ---------------------------------------------------------------------------

    def check(
        self, action: ProposedAction, target: dict[str, Any] | None, history: WorkloadHistory | None = None
    ) -> Decision:
        try:
            self._check(action, target, history or WorkloadHistory())
        except _Refused as refusal:
            return Decision(allowed=False, reason=str(refusal))
        except Exception as error:  # noqa: BLE001 - a rule that cannot be evaluated refuses (fail closed)
            return Decision(allowed=False, reason=f"could not be checked: {type(error).__name__}: {error}")
        return Decision(allowed=True, reason="allowed")

    def check_restore(self, target: dict[str, Any] | None) -> Decision:
        """Putting a snapshot back: same namespace, scope and protection rules; no verb or count limit."""
        try:
            if target is None:
                raise _Refused("target object not found")
            metadata = objects.meta(target)
            namespace, kind, name = metadata.get("namespace", ""), target.get("kind", ""), metadata.get("name", "")
            self._check_namespace(namespace)
            if (namespace, kind, name) != (self.scope.namespace, self.scope.kind, self.scope.name):
                raise _Refused(f"{kind}/{name} -n {namespace} is not the incident's workload ({self.scope})")
            self._check_protected(target)
        except _Refused as refusal:
            return Decision(allowed=False, reason=str(refusal))
        return Decision(allowed=True, reason="allowed")

    def _check(self, action: ProposedAction, target: dict[str, Any] | None, history: WorkloadHistory) -> None:
        verb = action.verb
        if verb not in self.settings.allowed_verbs:
            allowed = ", ".join(v.value for v in self.settings.allowed_verbs) or "none"
            raise _Refused(f"verb {verb.value} is not allowed by configuration (allowed: {allowed})")
        self._check_namespace(action.namespace)
        if action.namespace != self.scope.namespace:
            raise _Refused(f"namespace {action.namespace} is outside the incident's scope ({self.scope})")
        if not isinstance(action, DeletePod) and (action.target_kind, action.name) != (
            self.scope.kind,
            self.scope.name,
        ):
            raise _Refused(f"{action.target_kind}/{action.name} is not the incident's workload ({self.scope})")
        if target is None:
            raise _Refused(f"{action.target_kind}/{action.name} was not found")
        self._check_identity(action, target)
        if isinstance(action, DeletePod):
            self._check_pod_in_scope(target, history)
        self._check_protected(target)
        if isinstance(action, DeletePod) and history.workload is not None:
            self._check_protected(history.workload)
        self._check_counts()
        self._check_fields(action, target, history)

    def _check_namespace(self, namespace: str) -> None:
        settings = self.settings
        if namespace in {settings.own_namespace, settings.store_namespace}:
            raise _Refused(f"namespace {namespace} is AMOS's own namespace")
        if namespace in settings.excluded_namespaces:
            raise _Refused(f"namespace {namespace} is excluded")
        if settings.namespaces and namespace not in settings.namespaces:
            raise _Refused(f"namespace {namespace} is not watched")

    def _check_identity(self, action: ProposedAction, target: dict[str, Any]) -> None:
        metadata = objects.meta(target)
        seen = (target.get("kind"), metadata.get("namespace"), metadata.get("name"))
        if seen != (action.target_kind, action.namespace, action.name):
            raise _Refused(f"target object {seen[0]}/{seen[2]} -n {seen[1]} does not match the action")

    def _check_pod_in_scope(self, pod: dict[str, Any], history: WorkloadHistory) -> None:
        name = objects.meta(pod).get("name")
        owner = objects.controller_ref(pod)
        scope = self.scope
        if scope.kind == "Pod":
            if name == scope.name:
                return
        elif owner is not None and scope.kind == "Job":
            workload_uid = objects.meta(history.workload or {}).get("uid")
            if owner.get("kind") == "Job" and owner.get("name") == scope.name and owner.get("uid") == workload_uid:
                return
        elif owner is not None and scope.kind == "Deployment" and owner.get("kind") == "ReplicaSet":
            owned = {objects.meta(rs).get("uid") for rs in history.owned_replicasets()}
            if owner.get("uid") in owned:
                return
        raise _Refused(f"Pod/{name} does not belong to the incident's workload ({scope})")

    def _check_protected(self, obj: dict[str, Any]) -> None:
        for key in (self.settings.protected_label, self.settings.ignore_annotation):
            if objects.is_marked(obj, key):
                raise _Refused(f"{obj.get('kind')}/{objects.meta(obj).get('name')} is protected ({key})")

    def _check_counts(self) -> None:
        if self._session_actions >= self.session_limit:
            raise _Refused(f"session action limit reached ({self.session_limit} actions)")
        if self.budget.used() >= self.settings.actions_per_hour:
            raise _Refused(f"hourly action limit reached ({self.settings.actions_per_hour} per hour)")

    # --- field rules -------------------------------------------------------------------------

    def _check_fields(self, action: ProposedAction, target: dict[str, Any], history: WorkloadHistory) -> None:
        match action:
            case Scale():
                if action.replicas < 1:
                    raise _Refused(f"scaling to {action.replicas} replicas is never allowed (minimum 1)")
                if action.replicas > self.settings.max_replicas:
                    raise _Refused(f"{action.replicas} replicas is above the maximum of {self.settings.max_replicas}")
            case Rollback():
                self._check_rollback(action, target, history)
            case RestartRollout() | DeletePod():
                pass
            case SetImage():
                container = self._container(target, action.container)
                if container.get("image") == action.image:
                    raise _Refused(f"container {action.container} already runs {action.image}")
                known = history.images(action.container)
                if action.image not in known:
                    listed = ", ".join(sorted(known)) or "none"
                    raise _Refused(
                        f"image {action.image} never ran in a revision of {action.kind}/{action.name} "
                        f"(images in its history: {listed})"
                    )
            case SetResources():
                self._check_resources(action, self._container(target, action.container))
            case SetEnv():
                self._check_env(action, self._container(target, action.container))
            case SetArgs():
                self._container(target, action.container)
                if action.command is None and action.args is None:
                    raise _Refused("neither command nor args given")
                for value in (action.command or []) + (action.args or []):
                    if len(value) > MAX_ARG_CHARS:
                        raise _Refused(f"an argument is longer than {MAX_ARG_CHARS} characters")
            case FixProbe():
                self._check_probe(action, self._container(target, action.container))
            case _:
                raise _Refused(f"unknown action {type(action).__name__}")

    @staticmethod
    def _container(target: dict[str, Any], name: str) -> dict[str, Any]:
        found = objects.find_container(target, name)
        if found is None:
            names = ", ".join(objects.container_names(target)) or "none"
            raise _Refused(f"container {name} does not exist (containers: {names})")
        return found[1]

    @staticmethod
    def _check_rollback(action: Rollback, target: dict[str, Any], history: WorkloadHistory) -> None:
        revisions = history.revisions()
        current = objects.revision(target)
        if action.to_revision is not None:
            if action.to_revision not in revisions:
                known = ", ".join(str(r) for r in sorted(revisions)) or "none"
                raise _Refused(f"revision {action.to_revision} is not in the rollout history (revisions: {known})")
            if action.to_revision == current:
                raise _Refused(f"Deployment/{action.name} is already at revision {current}")
            return
        earlier = [r for r in revisions if current is None or r < current]
        if not earlier:
            raise _Refused(f"Deployment/{action.name} has no previous revision to roll back to")

    def _check_resources(self, action: SetResources, container: dict[str, Any]) -> None:
        changes = action.changes()
        if not changes:
            raise _Refused("no resource value given")
        resources = container.get("resources") or {}
        factor = Decimal(str(self.settings.max_memory_factor))
        for (section, resource), text in changes.items():
            new = _quantity(text)
            if new <= 0:
                raise _Refused(f"{resource} {section[:-1]} must be positive, not {text}")
            current_limit_text = (resources.get("limits") or {}).get(resource)
            current_request_text = (resources.get("requests") or {}).get(resource)
            current_limit = _quantity(current_limit_text) if current_limit_text else None
            current_request = _quantity(current_request_text) if current_request_text else None
            own = current_limit if section == "limits" else current_request
            base = own if own is not None else (current_request if section == "limits" else current_limit)
            if base is None:
                raise _Refused(f"container {action.container} has no {resource} limit or request to scale from")
            if new > base * factor:
                shown = current_limit_text if base is current_limit else current_request_text
                raise _Refused(
                    f"{resource} {section[:-1]} {text} is more than {self.settings.max_memory_factor:g}x "
                    f"the current {shown}"
                )
            if section == "limits" and current_request is not None and new < current_request:
                raise _Refused(f"{resource} limit {text} is below the current request {current_request_text}")

    @staticmethod
    def _check_env(action: SetEnv, container: dict[str, Any]) -> None:
        if "=" in action.env_name or not action.env_name.isprintable():
            raise _Refused(f"{action.env_name!r} is not an environment variable name")
        for item in container.get("env") or []:
            if item.get("name") == action.env_name and item.get("valueFrom"):
                raise _Refused(
                    f"env {action.env_name} comes from a reference (valueFrom); it is not replaced by a literal value"
                )

    @staticmethod
    def _check_probe(action: FixProbe, container: dict[str, Any]) -> None:
        current = container.get(action.field)
        if not current:
            raise _Refused(f"container {action.container} has no {action.field}; probes are patched, never added")
        if not action.patch:
            raise _Refused("empty probe patch")
        for key, value in action.patch.items():
            if value is None:
                raise _Refused(f"{action.field}.{key}: a probe field may be changed, never removed")
            if key in PROBE_TIMINGS:
                low, high = PROBE_TIMINGS[key]
                if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                    raise _Refused(f"{action.field}.{key} must be a whole number in [{low}, {high}], not {value!r}")
            elif key in PROBE_HANDLERS:
                if key not in current:
                    raise _Refused(f"{action.field} has no {key} handler; the handler kind is never changed")
                if not isinstance(value, dict) or not value:
                    raise _Refused(f"{action.field}.{key} must be a non-empty object")
                for field, item in value.items():
                    if field not in PROBE_HANDLERS[key] or item is None:
                        raise _Refused(f"{action.field}.{key}.{field} may not be patched")
                    if field == "path" and (not isinstance(item, str) or not item.startswith("/") or len(item) > 256):
                        raise _Refused(f"{action.field}.{key}.path must be an absolute URL path")
                    if field == "port" and not (
                        (isinstance(item, int) and not isinstance(item, bool) and 1 <= item <= 65535)
                        or (isinstance(item, str) and 0 < len(item) <= 15)
                    ):
                        raise _Refused(f"{action.field}.{key}.port must be a port number or name")
            else:
                allowed = ", ".join(sorted(PROBE_TIMINGS) + sorted(PROBE_HANDLERS))
                raise _Refused(f"{action.field}.{key} may not be patched (allowed: {allowed})")
