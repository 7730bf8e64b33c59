"""The policy guard: plain code that decides whether a proposed action may touch the cluster.

The model proposes; this module decides (complete mediation). It bounds *where* a write lands
(verb, namespace, the incident's own workload, protection, budgets) and *what* it writes: a value
the workload ran in a revision it controls, or a bounded step of a numeric knob. A new value that
is well formed but outside that history is not applied: the decision is a proposal for a person.

It is pure: the caller passes the target object and the workload's history it read, so every rule
can be tested without a cluster. A refusal or a proposal says which rule decided.
"""

from __future__ import annotations

import copy
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core import k8s
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

# Probe fields a fix may change, with inclusive absolute bounds; handlers only keep their kind (no exec).
PROBE_TIMINGS: dict[str, tuple[int, int]] = {
    "initialDelaySeconds": (0, 600),
    "periodSeconds": (1, 300),
    "timeoutSeconds": (1, 120),
    "failureThreshold": (1, 30),
    "successThreshold": (1, 10),
}
# What the API server fills in when a timing is not set, so a step is measured from the real value.
PROBE_DEFAULTS: dict[str, int] = {
    "initialDelaySeconds": 0,
    "periodSeconds": 10,
    "timeoutSeconds": 1,
    "failureThreshold": 3,
    "successThreshold": 1,
}
# A timing outside history may move to half or double its value, or by this many units when that is more
# (initialDelaySeconds 0 can still become 30).
PROBE_STEPS: dict[str, int] = {
    "initialDelaySeconds": 30,
    "periodSeconds": 10,
    "timeoutSeconds": 5,
    "failureThreshold": 3,
    "successThreshold": 1,
}
PROBE_HANDLERS: dict[str, set[str]] = {"httpGet": {"path", "port"}, "tcpSocket": {"port"}, "grpc": {"port"}}

# Below these a container cannot start; a fix never goes there.
RESOURCE_FLOORS: dict[str, tuple[Decimal, str]] = {
    "memory": (Decimal(16 * 1024 * 1024), "16Mi"),
    "cpu": (Decimal("0.010"), "10m"),
}
# Shapes of values a model proposes, always used with fullmatch (`$` would accept a trailing newline).
# A quantity is narrower than `core.k8s.parse_quantity` takes: no sign, no exponent, no `n` or `u`.
_QUANTITY = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[KMGTPE]i|[mkMGTPE])?")
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*")
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_PORT_NAME = re.compile(r"(?=.*[a-z])(?!.*--)[a-z0-9](?:[a-z0-9-]{0,13}[a-z0-9])?")

# Variables that change how a process loads code or reaches the network: never set unless the workload
# ran that exact value, not even as a proposal (a planted log line asks for exactly these).
LOADER_AND_PROXY_ENV = frozenset(
    {
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "LD_AUDIT",
        "DYLD_INSERT_LIBRARIES",
        "DYLD_LIBRARY_PATH",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "NODE_OPTIONS",
        "JAVA_TOOL_OPTIONS",
        "_JAVA_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "PYTHONSTARTUP",
        "PERL5OPT",
        "RUBYOPT",
        "BASH_ENV",
        "ENV",
        "PROMPT_COMMAND",
    }
)
# An interpreter given a script inline (`sh -c '…'`, `bash -lc`, `python3 -c`): a script is never taken from
# what a model read. Program name (version digits dropped) -> the short flags that take an inline script.
INLINE_SCRIPT_FLAGS: dict[str, set[str]] = {
    **{shell: {"c"} for shell in ("sh", "bash", "ash", "dash", "zsh", "ksh", "busybox")},
    "python": {"c"},
    "perl": {"e", "E"},
    "ruby": {"e"},
    "node": {"e", "p"},
}
INLINE_SCRIPT_LONG_FLAGS = {"--eval", "--print"}  # node
_SCRIPT_FILE = re.compile(r"[^-].*(?:/.*|\.(?:py|sh|bash|js|mjs|cjs|ts|rb|pl))")  # a path or a script's file name


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


# --- budgets ---------------------------------------------------------------------------------------------


class BudgetSlot:
    """One hourly-budget slot held between a check and the action's outcome (an opaque token)."""

    def __init__(self, taken_at: float) -> None:
        self.taken_at = taken_at


class ActionBudget:
    """Actions in the last hour, shared by every session; thread-safe.

    `reserve()` checks and takes a slot in one step, so concurrent sessions at 29/30 cannot all pass;
    `commit()` turns the slot into a counted action, `release()` gives it back. A slot never settled
    expires like an action after an hour. `times` seeds it with earlier actions (wall-clock seconds).
    """

    def __init__(self, per_hour: int, *, clock: Callable[[], float] = time.time, times: Iterable[float] = ()) -> None:
        self.per_hour = per_hour
        self._clock = clock
        self._times: deque[float] = deque(sorted(times))
        self._pending: list[BudgetSlot] = []
        self._lock = threading.RLock()  # reentrant: reserve/commit call the (overridable) used/note

    def _expire(self) -> None:
        horizon = self._clock() - HOUR_SECONDS
        while self._times and self._times[0] <= horizon:
            self._times.popleft()

    def used(self) -> int:
        """Actions counted in the last hour (slots held but not committed are `reserved()`)."""
        with self._lock:
            self._expire()
            return len(self._times)

    def reserved(self) -> int:
        with self._lock:
            horizon = self._clock() - HOUR_SECONDS
            self._pending = [slot for slot in self._pending if slot.taken_at > horizon]
            return len(self._pending)

    def note(self) -> None:
        """Count one action now (subclasses persist it)."""
        with self._lock:
            self._expire()
            self._times.append(self._clock())

    def times(self) -> list[float]:
        with self._lock:
            self._expire()
            return list(self._times)

    def reserve(self, limit: int | None = None) -> BudgetSlot | None:
        """Take a slot when used + reserved stays under `limit` (default `per_hour`); None when full."""
        cap = self.per_hour if limit is None else min(limit, self.per_hour)
        with self._lock:
            if self.used() + self.reserved() >= cap:
                return None
            slot = BudgetSlot(self._clock())
            self._pending.append(slot)
            return slot

    def commit(self, slot: BudgetSlot) -> None:
        """The reserved action happened: it becomes a counted action (atomically for `reserve`), even when
        the slot itself already expired."""
        with self._lock:
            self._drop(slot)
            self.note()

    def release(self, slot: BudgetSlot) -> None:
        with self._lock:
            self._drop(slot)

    def _drop(self, slot: BudgetSlot) -> None:
        if slot in self._pending:
            self._pending.remove(slot)


class Reservation:
    """One action slot in the session count and the hourly budget, held from the check to the outcome.

    Settle it exactly once (later calls do nothing): `commit()` when the action was applied (or validated in
    dry-run mode), `reject()` when the API server refused the write (it still counts toward the session
    limit, so a model cannot hammer the API, but frees the hourly slot), `release()` when nothing was sent
    (refused by a later check, a failed snapshot, a retry that decides again).
    """

    def __init__(self, guard: PolicyGuard, slot: BudgetSlot) -> None:
        self._guard = guard
        self._slot = slot
        self._settled = False

    @property
    def settled(self) -> bool:
        return self._settled

    def commit(self) -> None:
        self._settle(counts_in_session=True, counts_in_budget=True)

    def reject(self) -> None:
        self._settle(counts_in_session=True, counts_in_budget=False)

    def release(self) -> None:
        self._settle(counts_in_session=False, counts_in_budget=False)

    def _settle(self, *, counts_in_session: bool, counts_in_budget: bool) -> None:
        with self._guard._lock:
            if self._settled:
                return
            self._settled = True
            self._guard._settle(
                self, self._slot, counts_in_session=counts_in_session, counts_in_budget=counts_in_budget
            )


class Decision(BaseModel):
    """What the guard said. Three outcomes: allowed (with a `reservation` to settle), a proposal
    (`allowed=False, proposal=True`: a well-formed value outside the workload's history, shown to a
    person and never applied), or a refusal (`allowed=False, proposal=False`)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    allowed: bool
    reason: str
    proposal: bool = False
    reservation: Reservation | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="after")
    def _consistent(self) -> Decision:
        if self.proposal and self.allowed:
            raise ValueError("a proposal is never allowed")
        if self.reservation is not None and not self.allowed:
            raise ValueError("only an allowed decision holds a reservation")
        return self


# --- history -------------------------------------------------------------------------------------------


class ContainerResources(BaseModel):
    """Resources of one container as the API server admitted them (a LimitRange default limit included)."""

    model_config = ConfigDict(frozen=True)

    limits: dict[str, str] = Field(default_factory=dict)
    requests: dict[str, str] = Field(default_factory=dict)


def effective_resources_of(pod: dict[str, Any]) -> dict[str, ContainerResources]:
    """Container name -> admitted resources, read from a running pod of the workload."""
    found: dict[str, ContainerResources] = {}
    for _, container in objects.containers(pod):
        resources = container.get("resources") or {}
        found[str(container.get("name"))] = ContainerResources(
            limits={k: str(v) for k, v in (resources.get("limits") or {}).items()},
            requests={k: str(v) for k, v in (resources.get("requests") or {}).items()},
        )
    return found


Run = tuple[tuple[str, ...], tuple[str, ...]]


class ContainerHistory(BaseModel):
    """Every value one container (app, init or sidecar) had in the trusted, not known-bad revisions."""

    model_config = ConfigDict(frozen=True)

    images: frozenset[str] = frozenset()
    commands: frozenset[tuple[str, ...]] = frozenset()
    args: frozenset[tuple[str, ...]] = frozenset()
    runs: frozenset[Run] = frozenset()  # (command, args) as they ran together; () is "not set"
    env: dict[str, frozenset[str]] = Field(default_factory=dict)  # literal values only
    probes: dict[str, tuple[dict[str, Any], ...]] = Field(default_factory=dict)  # "livenessProbe" -> each seen


class WorkloadHistory(BaseModel):
    """The incident's workload and its revisions, as read by the caller, plus what AMOS knows about them.

    Only revisions the workload controls count: a ReplicaSet (Deployment) or ControllerRevision
    (StatefulSet, DaemonSet) with a `controller: true` ownerReference to the workload's uid whose
    template labels match the workload's selector. A CronJob's history is the job templates AMOS saw
    produce a successful Job (oldest first; revision n is the n-th).
    """

    workload: dict[str, Any] | None = None
    replicasets: list[dict[str, Any]] = Field(default_factory=list)
    controller_revisions: list[dict[str, Any]] = Field(default_factory=list)
    known_good_job_templates: list[dict[str, Any]] = Field(default_factory=list)
    known_bad: set[int] = Field(default_factory=set)
    known_good: set[int] | None = None  # None: nothing recorded or inferred
    effective_resources: dict[str, ContainerResources] = Field(default_factory=dict)

    # trust

    def _controls(self, revision: dict[str, Any], owner_kind: str) -> bool:
        workload = self.workload or {}
        uid = objects.meta(workload).get("uid")
        if not uid or workload.get("kind") != owner_kind:
            return False
        namespace = objects.meta(revision).get("namespace")
        if namespace is not None and namespace != objects.meta(workload).get("namespace"):
            return False
        refs = objects.meta(revision).get("ownerReferences") or []
        if not any(
            ref.get("controller") is True and ref.get("uid") == uid and ref.get("kind") == owner_kind for ref in refs
        ):
            return False
        template = _revision_template(revision)
        labels = (template.get("metadata") or {}).get("labels") or {}
        if not _selector_matches((workload.get("spec") or {}).get("selector"), labels):
            return False
        own_hash = objects.labels_of(revision).get(k8s.POD_TEMPLATE_HASH_LABEL)
        return own_hash is None or labels.get(k8s.POD_TEMPLATE_HASH_LABEL) == own_hash

    def owned_replicasets(self) -> list[dict[str, Any]]:
        """The ReplicaSets the Deployment controls (a name or a bare ownerReference is not enough)."""
        return [rs for rs in self.replicasets if self._controls(rs, "Deployment")]

    def revisions(self) -> dict[int, dict[str, Any]]:
        """Revision number -> the trusted ReplicaSet or ControllerRevision (CronJob: the job template)."""
        kind = (self.workload or {}).get("kind")
        if kind == "CronJob":
            return {number: template for number, template in enumerate(self.known_good_job_templates, start=1)}
        if kind == "Deployment":
            candidates = [(objects.revision(rs), rs) for rs in self.owned_replicasets()]
        elif kind in k8s.CONTROLLER_REVISION_KINDS:
            candidates = [
                (_int_or_none(cr.get("revision")), cr) for cr in self.controller_revisions if self._controls(cr, kind)
            ]
        else:
            return {}
        found: dict[int, dict[str, Any]] = {}
        duplicated: set[int] = set()
        for number, obj in candidates:
            if number is None:
                continue
            if number in found:
                duplicated.add(number)  # two objects claim one revision: trust neither
            found[number] = obj
        return {number: obj for number, obj in found.items() if number not in duplicated}

    def templates(self) -> dict[int, dict[str, Any]]:
        """Revision number -> its pod template, without the controller's hash labels."""
        kind = (self.workload or {}).get("kind")
        result: dict[int, dict[str, Any]] = {}
        for number, obj in self.revisions().items():
            if kind == "CronJob":
                template = objects.job_template_pods(obj)
            else:
                template = _revision_template(obj)
            result[number] = objects.normalized_template(template)
        return result

    def template_for(self, revision: int) -> dict[str, Any]:
        """What a rollback to `revision` writes: the pod template for `spec.template` (Deployment,
        StatefulSet, DaemonSet) or the whole job template for `spec.jobTemplate` (CronJob)."""
        if (self.workload or {}).get("kind") == "CronJob":
            return copy.deepcopy(self.revisions()[revision])
        return self.templates()[revision]

    def current_revisions(self) -> set[int]:
        """Revisions the workload runs now: the one it names, and any whose template equals its own."""
        workload = self.workload or {}
        kind = workload.get("kind")
        revisions = self.revisions()
        current: set[int] = set()
        named = objects.revision(workload)
        if kind == "Deployment" and named is not None:
            current.add(named)
        status = workload.get("status") or {}
        if kind == "StatefulSet" and status.get("observedGeneration") == objects.meta(workload).get("generation"):
            update = status.get("updateRevision")  # only when the status is of the current spec, not a lagging one
            current |= {n for n, cr in revisions.items() if update and objects.meta(cr).get("name") == update}
        if kind == "CronJob":
            own = _normalized_job((workload.get("spec") or {}).get("jobTemplate") or {})
            return current | {n for n, job in revisions.items() if _normalized_job(job) == own}
        own_template = objects.normalized_template(objects.pod_template(workload))
        return current | {n for n, template in self.templates().items() if template == own_template}

    def default_rollback_revision(self) -> int | None:
        """The target of a rollback without a revision: the newest revision that is not current, not known-bad
        and (when known-good revisions are known) known-good; None when there is none."""
        current, bad, good = self.current_revisions(), self.bad_revisions(), self.good_revisions()
        candidates = [n for n in self.revisions() if n not in current and n not in bad]
        if good is not None:
            candidates = [n for n in candidates if n in good]
        return max(candidates) if candidates else None

    def bad_revisions(self) -> set[int]:
        """Known-bad revisions (a CronJob's history holds only templates that succeeded)."""
        return set() if (self.workload or {}).get("kind") == "CronJob" else set(self.known_bad)

    def good_revisions(self) -> set[int] | None:
        """Known-good revisions, or None when nothing is known (a CronJob's whole history is known-good)."""
        return None if (self.workload or {}).get("kind") == "CronJob" else self.known_good

    # values

    def container_history(self, container: str) -> ContainerHistory:
        """Every value `container` had in a trusted revision that is not known-bad."""
        images: set[str] = set()
        commands: set[tuple[str, ...]] = set()
        arg_lists: set[tuple[str, ...]] = set()
        runs: set[Run] = set()
        env: dict[str, set[str]] = {}
        probes: dict[str, list[dict[str, Any]]] = {}
        bad = self.bad_revisions()
        for number, template in self.templates().items():
            if number in bad:
                continue
            match = objects.find_container({"kind": "Pod", "spec": template.get("spec") or {}}, container)
            if match is None:
                continue
            spec = match[1]
            if spec.get("image"):
                images.add(str(spec["image"]))
            command, args = _argv(spec.get("command")), _argv(spec.get("args"))
            commands.add(command)
            arg_lists.add(args)
            runs.add((command, args))
            for item in spec.get("env") or []:
                if "value" in item and not item.get("valueFrom"):
                    env.setdefault(str(item.get("name")), set()).add(str(item.get("value")))
            for field in ("livenessProbe", "readinessProbe", "startupProbe"):
                if isinstance(spec.get(field), dict):
                    probes.setdefault(field, []).append(spec[field])
        return ContainerHistory(
            images=frozenset(images),
            commands=frozenset(commands),
            args=frozenset(arg_lists),
            runs=frozenset(runs),
            env={name: frozenset(values) for name, values in env.items()},
            probes={field: tuple(seen) for field, seen in probes.items()},
        )

    def images(self, container: str) -> set[str]:
        """Images this container ran in a trusted, not known-bad revision of the workload."""
        return set(self.container_history(container).images)


class IncidentBaseline(BaseModel):
    """The workload as it was when the incident began: bounds the total change every attempt makes."""

    workload: dict[str, Any]
    effective_resources: dict[str, ContainerResources] = Field(default_factory=dict)


def _int_or_none(value: Any) -> int | None:
    return value if type(value) is int else None


def _revision_template(revision: dict[str, Any]) -> dict[str, Any]:
    """A ReplicaSet's `spec.template`, or a ControllerRevision's `data.spec.template` (minus `$patch`)."""
    if revision.get("kind") == "ControllerRevision" or "data" in revision:
        data = revision.get("data")
        if isinstance(data, str | bytes):
            data = json.loads(data)
        spec = (data or {}).get("spec") or {}
    else:
        spec = revision.get("spec") or {}
    template = spec.get("template")
    return template if isinstance(template, dict) else {}


def _normalized_job(job_template: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(job_template)
    spec = result.get("spec") or {}
    if isinstance(spec.get("template"), dict):
        spec["template"] = objects.normalized_template(spec["template"])
    return result


def _selector_matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """LabelSelector semantics; an empty or missing selector selects nothing here (fail closed)."""
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return False
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
        if operator not in {"In", "NotIn", "Exists", "DoesNotExist"}:
            return False
    return True


def _argv(value: Any) -> tuple[str, ...]:
    """A command or args list as a tuple; not set and empty both mean the image's default."""
    return tuple(str(item) for item in value or [])


# --- quantities ------------------------------------------------------------------------------------------


def _quantity(value: str) -> Decimal:
    """A quantity read from the cluster (already validated by the API server)."""
    try:
        return k8s.parse_quantity(value)
    except ValueError as error:
        raise _Refused(f"{value!r} is not a Kubernetes quantity") from error


def _strict_quantity(resource: str, text: str) -> Decimal:
    """A quantity a model proposes: plain digits and a suffix (no exponent, no sign); memory in whole bytes
    (so `128m`, 0.128 bytes, is refused), CPU in whole millicores."""
    if not _QUANTITY.fullmatch(text):
        raise _Refused(f"{text!r} is not a Kubernetes quantity (digits and a suffix like Mi, Gi or m)")
    value = _quantity(text)
    if resource == "memory" and text.endswith("m"):
        raise _Refused(f"memory {text!r} is in millibytes (did you mean {text[:-1]}Mi?)")
    if resource == "memory" and value != value.to_integral_value():
        raise _Refused(f"memory {text!r} is not a whole number of bytes")
    if resource == "cpu" and value * 1000 != (value * 1000).to_integral_value():
        raise _Refused(f"cpu {text!r} is finer than 1m")
    return value


class _Refused(Exception):
    """A rule said no; the message is the reason."""


# --- the guard -------------------------------------------------------------------------------------------


class PolicyGuard:
    """Says allowed, proposal or refused for each proposed action, before any mutating API call.

    Rules, in order: verb allowed by config; namespace watched, not excluded, not AMOS's own;
    target is the incident's workload (or one of its pods); target not protected; session and
    hourly action limits; then the action's own rules (well-formed values, bounds, history).
    An allowed decision reserves one slot in the session and hourly counts (see `Reservation`).

    `baseline` is the workload when the incident began; resource and probe steps are bounded against
    it as well as against the current value, so attempts cannot compound. Without one, the first
    workload this guard checks is the baseline (which bounds one session, not the incident).
    """

    def __init__(
        self,
        settings: Settings,
        scope: IncidentScope,
        *,
        budget: ActionBudget | None = None,
        session_limit: int = DEFAULT_SESSION_ACTIONS,
        baseline: IncidentBaseline | None = None,
    ) -> None:
        self.settings = settings
        self.scope = scope
        self.budget = budget or ActionBudget(settings.actions_per_hour)
        self.session_limit = session_limit
        self.baseline = baseline
        self._session_actions = 0
        self._pending: list[Reservation] = []
        self._lock = threading.RLock()

    @property
    def session_actions(self) -> int:
        """Actions of this session that reached the API server (applied, dry-run, or rejected there)."""
        return self._session_actions

    def note_action(self) -> None:
        """Count one action that reached the API server: commits the oldest open reservation, or counts anew.

        Kept for callers that do not settle `Decision.reservation` themselves.
        """
        with self._lock:
            if self._pending:
                self._pending[0].commit()
                return
            self._session_actions += 1
            self.budget.note()

    # --- decisions ---------------------------------------------------------------------------

    def check(
        self, action: ProposedAction, target: dict[str, Any] | None, history: WorkloadHistory | None = None
    ) -> Decision:
        history = history or WorkloadHistory()
        try:
            self._check_where(action, target, history)
            reservation = self._reserve()  # the count check and the slot in one step
            try:
                proposal = self._check_what(action, target, history)
            except BaseException:
                reservation.release()
                raise
            if proposal is not None:
                reservation.release()
                return Decision(allowed=False, proposal=True, reason=proposal)
        except _Refused as refusal:
            return Decision(allowed=False, reason=str(refusal))
        except Exception as error:  # noqa: BLE001 - a rule that cannot be evaluated refuses (fail closed)
            return Decision(allowed=False, reason=f"could not be checked: {type(error).__name__}: {error}")
        return Decision(allowed=True, reason="allowed", reservation=reservation)

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

    def _check_where(self, action: ProposedAction, target: dict[str, Any] | None, history: WorkloadHistory) -> None:
        """Verb, namespace, scope, identity and protection; raises `_Refused`."""
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

    def _check_what(
        self, action: ProposedAction, target: dict[str, Any] | None, history: WorkloadHistory
    ) -> str | None:
        """The action's own rules; raises `_Refused`, returns a proposal's reason, or None when allowed."""
        if isinstance(action, DeletePod) or target is None:
            return None
        history = self._history_of(target, history)
        return self._check_fields(action, target, history, self._baseline_of(target, history))

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
        workload_uid = objects.meta(history.workload or {}).get("uid")
        if scope.kind == "Pod":
            if name == scope.name:
                return
        elif owner is not None and scope.kind in k8s.POD_CONTROLLER_KINDS:
            if owner.get("kind") == scope.kind and owner.get("name") == scope.name and owner.get("uid") == workload_uid:
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

    # --- counts --------------------------------------------------------------------------------

    def _hourly_limit(self) -> int:
        return min(self.settings.actions_per_hour, self.budget.per_hour)

    def _settle(
        self, reservation: Reservation, slot: BudgetSlot, *, counts_in_session: bool, counts_in_budget: bool
    ) -> None:
        with self._lock:
            self._pending.remove(reservation)
            if counts_in_session:
                self._session_actions += 1
            if counts_in_budget:
                self.budget.commit(slot)
            else:
                self.budget.release(slot)

    def _reserve(self) -> Reservation:
        """Session and hourly limits, checked and a slot taken under one lock (no check-then-note race)."""
        with self._lock:
            if self._session_actions + len(self._pending) >= self.session_limit:
                raise _Refused(f"session action limit reached ({self.session_limit} actions)")
            slot = self.budget.reserve(self._hourly_limit())
            if slot is None:
                raise _Refused(f"hourly action limit reached ({self.settings.actions_per_hour} per hour)")
            reservation = Reservation(self, slot)
            self._pending.append(reservation)
            return reservation

    # --- history and baseline ------------------------------------------------------------------

    @staticmethod
    def _history_of(target: dict[str, Any], history: WorkloadHistory) -> WorkloadHistory:
        """The history of exactly this object: the target anchors the trust (its uid)."""
        if history.workload is None:
            return history.model_copy(update={"workload": target})
        if objects.meta(history.workload).get("uid") != objects.meta(target).get("uid"):
            raise _Refused("the rollout history given is of another object than the target")
        return history.model_copy(update={"workload": target})

    def _baseline_of(self, target: dict[str, Any], history: WorkloadHistory) -> IncidentBaseline:
        with self._lock:
            if self.baseline is None:
                self.baseline = IncidentBaseline(
                    workload=copy.deepcopy(target), effective_resources=history.effective_resources
                )
            baseline = self.baseline
        if objects.meta(baseline.workload).get("uid") != objects.meta(target).get("uid"):
            raise _Refused("the incident's starting state is of another object than the target")
        return baseline

    # --- field rules ---------------------------------------------------------------------------

    def _check_fields(
        self, action: ProposedAction, target: dict[str, Any], history: WorkloadHistory, baseline: IncidentBaseline
    ) -> str | None:
        match action:
            case Scale():
                return self._check_scale(action, target)
            case Rollback():
                return self._check_rollback(action, history)
            case RestartRollout():
                return None
            case SetImage():
                return self._check_image(action, self._container(target, action.container), history)
            case SetResources():
                self._check_resources(action, target, history, baseline)
                return None
            case SetEnv():
                return self._check_env(action, self._container(target, action.container), history)
            case SetArgs():
                return self._check_args(action, self._container(target, action.container), history)
            case FixProbe():
                return self._check_probe(action, self._container(target, action.container), history, baseline)
            case _:
                raise _Refused(f"unknown action {type(action).__name__}")

    @staticmethod
    def _container(target: dict[str, Any], name: str) -> dict[str, Any]:
        found = objects.find_container(target, name)
        if found is None:
            names = ", ".join(objects.container_names(target)) or "none"
            raise _Refused(f"container {name} does not exist (containers: {names})")
        return found[1]

    def _check_scale(self, action: Scale, target: dict[str, Any]) -> str | None:
        """1..max_replicas, and up only: scaling down sheds capacity and fixes nothing, so it goes to a person."""
        replicas = action.replicas
        if type(replicas) is not int:
            raise _Refused(f"replicas must be a whole number, not {replicas!r}")
        if replicas < 1:
            raise _Refused(f"scaling to {replicas} replicas is never allowed (minimum 1)")
        if replicas > self.settings.max_replicas:
            raise _Refused(f"{replicas} replicas is above the maximum of {self.settings.max_replicas}")
        current = (target.get("spec") or {}).get("replicas", 1)
        if replicas == current:
            raise _Refused(f"{action.kind}/{action.name} already has {current} replicas")
        if type(current) is int and replicas < current:
            return (
                f"scaling {action.kind}/{action.name} down from {current} to {replicas} replicas is not a fix "
                "AMOS makes on its own"
            )
        return None

    @staticmethod
    def _check_rollback(action: Rollback, history: WorkloadHistory) -> str | None:
        revisions = history.revisions()
        label = f"{action.kind}/{action.name}"
        if not revisions:
            raise _Refused(f"{label} has no revision history it controls to roll back to")
        current = history.current_revisions()
        number = action.to_revision
        if number is None:
            number = history.default_rollback_revision()
            if number is None:
                good = " known to be good" if history.good_revisions() is not None else ""
                raise _Refused(f"{label} has no previous revision{good} to roll back to")
        if type(number) is not int or number not in revisions:
            known = ", ".join(str(r) for r in sorted(revisions)) or "none"
            raise _Refused(f"revision {number} is not in the rollout history (revisions: {known})")
        if number in current:
            raise _Refused(f"{label} is already at revision {number}")
        if number in history.bad_revisions():
            raise _Refused(f"revision {number} of {label} is known to be bad (AMOS saw it failing)")
        known_good = history.good_revisions()
        if known_good is not None and number not in known_good:
            good = ", ".join(str(r) for r in sorted(known_good)) or "none"
            return f"revision {number} of {label} is not known to have been healthy (known-good revisions: {good})"
        return None

    @staticmethod
    def _check_image(action: SetImage, container: dict[str, Any], history: WorkloadHistory) -> str | None:
        image = action.image
        if not _IMAGE.fullmatch(image):
            raise _Refused(f"{image!r} is not an image reference")
        if container.get("image") == image:
            raise _Refused(f"container {action.container} already runs {image}")
        known = history.container_history(action.container).images
        if image not in known:
            listed = ", ".join(sorted(known)) or "none"
            return (
                f"image {image} never ran in a revision of {action.kind}/{action.name} "
                f"(images in its history: {listed})"
            )
        return None

    @staticmethod
    def _check_args(action: SetArgs, container: dict[str, Any], history: WorkloadHistory) -> str | None:
        if action.command is None and action.args is None:
            raise _Refused("neither command nor args given")
        for value in (action.command or []) + (action.args or []):
            if len(value) > MAX_ARG_CHARS:
                raise _Refused(f"an argument is longer than {MAX_ARG_CHARS} characters")
            if "\x00" in value:
                raise _Refused("an argument contains a NUL character")
        command = _argv(action.command) if action.command is not None else _argv(container.get("command"))
        args = _argv(action.args) if action.args is not None else _argv(container.get("args"))
        if (command, args) == (_argv(container.get("command")), _argv(container.get("args"))):
            raise _Refused(f"container {action.container} already runs that command and args")
        known = history.container_history(action.container).runs
        if (command, args) in known:
            return None
        script = _inline_script(command + args)
        if script:
            raise _Refused(f"{script} runs an inline script the workload never ran; AMOS never applies or proposes it")
        return (
            f"command {list(command)} with args {list(args)} never ran together in a revision of "
            f"{action.kind}/{action.name}"
        )

    @staticmethod
    def _check_env(action: SetEnv, container: dict[str, Any], history: WorkloadHistory) -> str | None:
        name, value = action.env_name, action.value
        if not _ENV_NAME.fullmatch(name):
            raise _Refused(f"{name!r} is not an environment variable name")
        if "\x00" in value:
            raise _Refused(f"the value of env {name} contains a NUL character")
        literal = None
        for item in container.get("env") or []:
            if item.get("name") != name:
                continue
            if item.get("valueFrom"):
                source = ", ".join(sorted(item["valueFrom"])) or "valueFrom"
                raise _Refused(
                    f"env {name} comes from a reference (valueFrom: {source}); it is never replaced by a literal value"
                )
            literal = item
        if literal is None and container.get("envFrom"):
            raise _Refused(
                f"container {action.container} takes variables from envFrom (a ConfigMap or Secret) and {name} is not "
                "a literal in its env; a literal could override a Secret's value"
            )
        if literal is not None and literal.get("value", "") == value:
            raise _Refused(f"env {name} of container {action.container} already has that value")
        known = history.container_history(action.container).env
        if value in known.get(name, frozenset()):
            return None
        if name.upper() in LOADER_AND_PROXY_ENV:
            raise _Refused(
                f"env {name} changes how the process loads code or reaches the network and never had this value "
                "in the workload's history; AMOS never applies or proposes it"
            )
        seen = "a new value" if name in known else "a new variable"
        return f"env {name}={value!r} is {seen}: it never had this value in a revision of {action.kind}/{action.name}"

    def _check_resources(
        self, action: SetResources, target: dict[str, Any], history: WorkloadHistory, baseline: IncidentBaseline
    ) -> None:
        """Each value strict, above the floor, limit >= request, within the factor of the current value and of the
        incident's starting value (current = the template's value, else the pod's admitted one)."""
        container = self._container(target, action.container)
        changes = action.changes()
        if not changes:
            raise _Refused("no resource value given")
        factor = Decimal(str(self.settings.max_memory_factor))
        times = f"{self.settings.max_memory_factor:g}x"
        now = _resources(container, history.effective_resources.get(action.container))
        base_container = objects.find_container(baseline.workload, action.container)
        start = (
            _resources(base_container[1], baseline.effective_resources.get(action.container)) if base_container else {}
        )
        proposed = {key: (_strict_quantity(key[1], text), text) for key, text in changes.items()}
        after = now | proposed  # the container's resources once the change is applied
        for (section, resource), (value, text) in proposed.items():
            what = f"{resource} {section[:-1]}"
            if value <= 0:
                raise _Refused(f"{what} must be positive, not {text}")
            floor, floor_text = RESOURCE_FLOORS[resource]
            if value < floor:
                raise _Refused(f"{what} {text} is below the floor of {floor_text}")
            request, limit = after.get(("requests", resource)), after.get(("limits", resource))
            if section == "limits" and request is not None and value < request[0]:
                which = "requested" if ("requests", resource) in proposed else "current request"
                raise _Refused(f"{resource} limit {text} is below the {which} {request[1]}")
            base = _scale_from(now, section, resource)
            if base is None:
                raise _Refused(f"container {action.container} has no {resource} limit or request to scale from")
            if value > base[0] * factor:
                raise _Refused(f"{what} {text} is more than {times} the current {base[1]}")
            if value < base[0] / factor:
                raise _Refused(f"{what} {text} is less than the current {base[1]} divided by {times[:-1]}")
            begin = _scale_from(start, section, resource)
            if begin is None:
                raise _Refused(
                    f"container {action.container} had no {resource} limit or request when the incident began; "
                    "the total change cannot be bounded"
                )
            if not begin[0] / factor <= value <= begin[0] * factor:
                raise _Refused(
                    f"{what} {text} is beyond {times} of {begin[1]}, its value when the incident began "
                    "(the total change per incident is bounded)"
                )
            if section == "requests" and limit is not None and value > limit[0]:
                which = "new limit" if ("limits", resource) in proposed else "limit"
                raise _Refused(f"{resource} request {text} is above the {which} {limit[1]}")

    def _check_probe(
        self, action: FixProbe, container: dict[str, Any], history: WorkloadHistory, baseline: IncidentBaseline
    ) -> str | None:
        current = container.get(action.field)
        if not current:
            raise _Refused(f"container {action.container} has no {action.field}; probes are patched, never added")
        patch = action.patch_of(current)
        if not patch:
            raise _Refused("empty probe patch")
        seen = history.container_history(action.container).probes.get(action.field, ())
        base_container = objects.find_container(baseline.workload, action.container)
        start = (base_container[1].get(action.field) if base_container else None) or {}
        proposals: list[str] = []
        for key, value in patch.items():
            where = f"{action.field}.{key}"
            if value is None:
                raise _Refused(f"{where}: a probe field may be changed, never removed")
            if key in PROBE_TIMINGS:
                self._check_timing(action, key, value, current, start, seen)
            elif key in PROBE_HANDLERS:
                proposals += self._check_handler(action, key, value, current, container, seen)
            else:
                allowed = ", ".join(sorted(PROBE_TIMINGS) + sorted(PROBE_HANDLERS))
                raise _Refused(f"{where} may not be patched (allowed: {allowed})")
        return "; ".join(proposals) or None

    @staticmethod
    def _check_timing(
        action: FixProbe,
        key: str,
        value: Any,
        current: dict[str, Any],
        start: dict[str, Any],
        seen: tuple[dict[str, Any], ...],
    ) -> None:
        """A timing is a strict int inside the absolute bounds, and either a value from history or a bounded
        step (half to double, or one step unit) from both the current value and the incident's start."""
        where = f"{action.field}.{key}"
        low, high = PROBE_TIMINGS[key]
        if type(value) is not int or not low <= value <= high:
            raise _Refused(f"{where} must be a whole number in [{low}, {high}], not {value!r}")
        if key == "successThreshold" and action.probe != "readiness" and value != 1:
            raise _Refused(f"{where} must be 1 for a {action.probe} probe")
        default = PROBE_DEFAULTS[key]
        if value in {probe.get(key, default) for probe in seen}:
            return
        for label, reference in (("current", current.get(key, default)), ("starting", start.get(key, default))):
            if type(reference) is not int:
                raise _Refused(f"{where} has no whole-number {label} value to step from")
            lowest = max(low, math.ceil(reference / 2))
            highest = min(high, max(reference * 2, reference + PROBE_STEPS[key]))
            if not lowest <= value <= highest:
                raise _Refused(
                    f"{where} {value} is outside [{lowest}, {highest}] (half to double, or ±{PROBE_STEPS[key]}, "
                    f"of the {label} {reference}) and never ran in the workload's history"
                )

    @staticmethod
    def _check_handler(
        action: FixProbe,
        key: str,
        value: Any,
        current: dict[str, Any],
        container: dict[str, Any],
        seen: tuple[dict[str, Any], ...],
    ) -> list[str]:
        """Raises for a malformed handler patch; returns a proposal for each path or port outside history (a port
        the container declares counts as known)."""
        where = f"{action.field}.{key}"
        if key not in current:
            raise _Refused(f"{action.field} has no {key} handler; the handler kind is never changed")
        if not isinstance(value, dict) or not value:
            raise _Refused(f"{where} must be a non-empty object")
        proposals = []
        for field, item in value.items():
            if field not in PROBE_HANDLERS[key] or item is None:
                raise _Refused(f"{where}.{field} may not be patched")
            if field == "path" and (
                not isinstance(item, str) or not item.startswith("/") or len(item) > 256 or not item.isprintable()
            ):
                raise _Refused(f"{where}.path must be an absolute URL path")
            if field == "port" and not (
                (type(item) is int and 1 <= item <= 65535) or (isinstance(item, str) and _PORT_NAME.fullmatch(item))
            ):
                raise _Refused(f"{where}.port must be a port number or an IANA port name")
            known = {(probe.get(key) or {}).get(field) for probe in seen if isinstance(probe.get(key), dict)}
            if field == "port":
                for port in container.get("ports") or []:
                    known |= {port.get("containerPort"), port.get("name")}
            if item not in known - {None}:
                proposals.append(f"{where}.{field} {item!r} never ran in the workload's history")
        return proposals


def _resources(
    container: dict[str, Any], effective: ContainerResources | None
) -> dict[tuple[str, str], tuple[Decimal, str]]:
    """(section, resource) -> (value, text): the template's value, else the pod's admitted one."""
    template = container.get("resources") or {}
    found: dict[tuple[str, str], tuple[Decimal, str]] = {}
    for section in ("limits", "requests"):
        admitted = getattr(effective, section) if effective is not None else {}
        for resource in RESOURCE_FLOORS:
            text = (template.get(section) or {}).get(resource) or admitted.get(resource)
            if text:
                found[(section, resource)] = (_quantity(str(text)), str(text))
    return found


def _scale_from(
    values: dict[tuple[str, str], tuple[Decimal, str]], section: str, resource: str
) -> tuple[Decimal, str] | None:
    """The value a change is measured from: its own, else its counterpart (a new limit scales from the request)."""
    other = "requests" if section == "limits" else "limits"
    return values.get((section, resource)) or values.get((other, resource))


def _inline_script(argv: tuple[str, ...]) -> str | None:
    """`sh -c` (or `bash -lc`, `python3 -W x -c`, `node -e`, …) anywhere in a command line, as text, else None.

    After an interpreter, every token up to the script file it runs is read as an option (an option's own
    argument included), so `python app.py -c config.yaml` is not an inline script but `python -W x -c …` is.
    """
    for position, token in enumerate(argv):
        flags = INLINE_SCRIPT_FLAGS.get(re.sub(r"[0-9.]+$", "", token.rsplit("/", 1)[-1]))
        if not flags:
            continue
        for option in argv[position + 1 :]:
            if _SCRIPT_FILE.fullmatch(option):
                break
            short = option.startswith("-") and not option.startswith("--") and any(f in option[1:] for f in flags)
            if short or option in INLINE_SCRIPT_LONG_FLAGS:
                return f"{token} {option}"
    return None
