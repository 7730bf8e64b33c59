"""Mutating tools: each typed action passes the policy guard, a server-side dry-run, then one conditional write.

The model-facing tools are generated from the action models (`tool_function`): one function per
model, so a tool's name, parameters and description are written once, in `core.actions`.
Writes are serialized with a lock (ADK may run one turn's tool calls in parallel).
A write carries the resourceVersion it was decided on: when someone changed the
spec meanwhile, the API answers 409 and AMOS reports a conflict (`ToolStatus.CONFLICT`) instead
of overwriting. Every outcome (applied, refused, proposed, dry_run, failed) becomes an
`ActionRecord` with a short diff of the fields it changed.

Rollback, for every kind that keeps history, writes what `kubectl rollout undo` writes: the
template of a ReplicaSet (Deployment) or ControllerRevision (StatefulSet, DaemonSet), or for a
CronJob a job template AMOS saw produce a successful Job. Without a revision number it goes to
the newest known-good revision (never a known-bad one). After a StatefulSet or an `OnDelete`
DaemonSet is rolled back, the failing pods its controller would not replace are evicted.

The guard judges values against the workload's history: the write tools fill its
`WorkloadHistory` (ReplicaSets, ControllerRevisions, recorded job templates, known-good and
known-bad revisions, the effective resources of one live pod). When the guard answers with a
proposal, the change is validated by a server-side dry-run and recorded as PROPOSED with its
diff, never applied.
"""

from __future__ import annotations

import copy
import inspect
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol

from pydantic import ValidationError

from core import k8s
from core.actions import (
    ACTION_MODELS,
    TOOL_ACTIONS,
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
    described_call,
)
from core.models import ObjectRef
from core.report import ActionRecord, ActionStatus
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess
from tools.diff import spec_diff
from tools.policy import Decision, PolicyGuard, WorkloadHistory
from tools.read import KnownGood
from tools.results import ToolResult, ToolStatus
from tools.snapshot import Snapshot, take_snapshot

# A 409 where only status moved (a rollout in progress updates it several times a second) is
# retried from a fresh read, like client-go's retry.RetryOnConflict; a spec change never is.
MAX_CONFLICT_RETRIES = 6
RETRY_BACKOFF_SECONDS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
OBSERVE_TIMEOUT_SECONDS = 15.0  # how long to wait for a controller to see a new template before replacing pods


def _backoff(attempt: int) -> None:
    base = RETRY_BACKOFF_SECONDS[min(attempt, len(RETRY_BACKOFF_SECONDS)) - 1]
    time.sleep(base * random.uniform(0.8, 1.2))


TOOL_RESULT_DOC = """Returns:
    {ok, status, data: {status, summary, diff}, error}; status ok (data.status: applied, proposed or dry_run),
    refused (final: do not retry it or a variation of it), conflict or error."""


def tool_function(model: type[ProposedAction], call: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The ADK function of one action model: named `tool_name`, described by the class docstring, taking the
    model's fields (but the `action` discriminator) as keyword parameters with their types, defaults and
    descriptions, so the declaration ADK builds is the model's schema."""
    parameters = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if field.is_required() else field.default,
            annotation=Annotated[field.annotation, field],
        )
        for name, field in model.model_fields.items()
        if name != "action"
    ]

    def apply_call(**args: Any) -> dict[str, Any]:
        return call(model.tool_name, **args)

    apply_call.__name__ = apply_call.__qualname__ = model.tool_name
    apply_call.__doc__ = f"{inspect.cleandoc(model.__doc__ or '')}\n\n{TOOL_RESULT_DOC}"
    apply_call.__signature__ = inspect.Signature(parameters, return_annotation=dict[str, Any])  # type: ignore[attr-defined]
    apply_call.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": dict[str, Any]}
    return apply_call


def replace_failing_pods(
    access: ClusterAccess, ref: ObjectRef, *, dry_run: bool, timeout: float = OBSERVE_TIMEOUT_SECONDS
) -> tuple[list[str], list[str]]:
    """After a StatefulSet's or DaemonSet's template was put back: evict the failing pods its controller
    will not replace by itself (see `objects.pods_to_replace`). Returns (evicted pod names, problems).

    Waits (at most `timeout`) for the controller to see the new template first, so the pods on the
    restored revision are known. Evictions honour PodDisruptionBudgets and carry the pod's uid.
    """
    if ref.kind not in k8s.CONTROLLER_REVISION_KINDS or dry_run:
        return [], []
    deadline = time.monotonic() + timeout
    workload = access.get(ref.kind, ref.namespace, ref.name)
    while not objects.observed(workload) and time.monotonic() < deadline:
        time.sleep(0.25)
        workload = access.get(ref.kind, ref.namespace, ref.name)
    if not objects.observed(workload):
        return [], [f"the {ref.kind} controller did not see the restored template within {timeout:.0f}s"]
    history = access.history_of(workload)
    evicted, problems = [], []
    for pod in objects.pods_to_replace(workload, history, access.pods_of(workload)):
        name = str(objects.meta(pod).get("name"))
        try:
            access.evict(ref.namespace, name, str(objects.meta(pod).get("uid")), dry_run=False)
            evicted.append(name)
        except ApiCallError as error:
            if error.status != 404:
                problems.append(f"Pod/{name}: {access.redactor.redact_text(str(error))}")
    return evicted, problems


@dataclass
class _Workload:
    """What a write reads about the incident's workload besides the object: history, pods, known-good state."""

    obj: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    pods: list[dict[str, Any]] = field(default_factory=list)
    judged: dict[str, Any] = field(default_factory=dict)
    job_templates: dict[int, dict[str, Any]] = field(default_factory=dict)

    def known_bad(self) -> set[int]:
        states = self.judged.get("revisions") or {}
        return {int(number) for number, state in states.items() if state.get("known_bad")}

    def known_good(self) -> set[int] | None:
        """Revisions recorded or inferred good; None when AMOS's known-good history is not available."""
        if not self.judged:
            return None
        states = self.judged.get("revisions") or {}
        return {int(number) for number, state in states.items() if state.get("known_good")} or None

    def effective_resources(self) -> dict[str, dict[str, dict[str, str]]]:
        """container -> {limits, requests} of one live pod: what admission gave it (a LimitRange default limit
        shows only there)."""
        live = [pod for pod in self.pods if not objects.meta(pod).get("deletionTimestamp")]
        if not live:
            return {}
        found = {}
        for _, container in objects.containers(live[-1]):
            resources = container.get("resources") or {}
            found[str(container.get("name"))] = {
                section: {key: str(value) for key, value in (resources.get(section) or {}).items()}
                for section in ("limits", "requests")
            }
        return found


class _Slot(Protocol):
    """`tools.policy.Reservation`: the action slot a guard's decision holds until the outcome is known."""

    def commit(self) -> None: ...

    def reject(self) -> None: ...

    def release(self) -> None: ...


class _NotApplied(Exception):
    """The write was decided against after the guard (no revision to return to); the message says why."""


class ActionRecorder:
    """A thread-safe, list-like log of ActionRecords for one session."""

    def __init__(self) -> None:
        self._items: list[ActionRecord] = []
        self._lock = threading.Lock()

    def append(self, record: ActionRecord) -> None:
        with self._lock:
            self._items.append(record)

    def records(self) -> list[ActionRecord]:
        with self._lock:
            return list(self._items)

    def __iter__(self) -> Iterator[ActionRecord]:
        return iter(self.records())

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> ActionRecord:
        return self.records()[index]


@dataclass
class _Plan:
    call: Literal["patch", "replace", "evict"]
    body: dict[str, Any]


class _Retry(Exception):
    """Only status moved between read and write: read again and decide again."""


class WriteTools:
    """Guarded write tools for one remediation session (one incident, one `PolicyGuard`)."""

    def __init__(
        self,
        access: ClusterAccess,
        guard: PolicyGuard,
        recorder: ActionRecorder | list[ActionRecord] | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        known_good: KnownGood | None = None,
    ) -> None:
        self.access = access
        self.guard = guard
        self.known_good = known_good
        self.recorder = recorder if recorder is not None else ActionRecorder()
        self.snapshots: dict[str, Snapshot] = {}
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot_of: dict[ObjectRef, str] = {}
        self._written_generation: dict[ObjectRef, int] = {}

    def as_functions(self) -> list[Callable[..., dict[str, Any]]]:
        """The model-facing write tools: one per action model, each a `call` of its tool (see `tool_function`)."""
        return [tool_function(model, self.call) for model in ACTION_MODELS]

    def call(self, tool: str, **args: Any) -> dict[str, Any]:
        """One write-tool call as a model makes it: the arguments become the tool's action, then `apply`."""
        model = TOOL_ACTIONS[tool]
        try:
            action = model.model_validate(args)
        except ValidationError as error:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
            reason = f"invalid action: {problems}"
            self._record_ref(*described_call(tool, args), ActionStatus.REFUSED, reason)
            return ToolResult.refused(reason).model_dump()
        return self.apply(action).model_dump()

    # --- orchestrator API ---------------------------------------------------------------------

    def snapshot_for(self, target: ObjectRef) -> Snapshot | None:
        """The first snapshot of `target` taken in this session (the state before AMOS's first change)."""
        snapshot_id = self._snapshot_of.get(target)
        return self.snapshots.get(snapshot_id) if snapshot_id else None

    def written_generation(self, target: ObjectRef) -> int | None:
        """The `metadata.generation` AMOS's last write to `target` produced (what a restore expects to find)."""
        return self._written_generation.get(target)

    def apply(self, action: ProposedAction) -> ToolResult:
        """Run one typed action through guard, dry-run and conditional write; never raises."""
        with self._lock:
            try:
                return self._apply(action)
            except Exception as error:  # noqa: BLE001 - a tool never raises into the agent loop
                text = self._error_text(error, action.action)
                self._record(action, ActionStatus.FAILED, text)
                return ToolResult.failure(text)

    # --- pipeline -----------------------------------------------------------------------------

    def _apply(self, action: ProposedAction) -> ToolResult:
        ref = ObjectRef(kind=action.target_kind, namespace=action.namespace, name=action.name)
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            if attempt:
                _backoff(attempt)
            try:
                return self._attempt(action, ref)
            except _Retry:
                continue
        text = f"{action.action} failed: the object kept changing; gave up after {MAX_CONFLICT_RETRIES + 1} tries"
        self._record(action, ActionStatus.FAILED, text)
        return ToolResult.failure(text)

    def _attempt(self, action: ProposedAction, ref: ObjectRef) -> ToolResult:
        target = self._read_or_none(ref)
        workload = self._workload(action, target)
        if isinstance(action, Rollback):
            try:
                action = self._rollback_target(action, workload)
            except _NotApplied as refusal:
                self._record(action, ActionStatus.REFUSED, str(refusal))
                return ToolResult.refused(str(refusal))
        decision = self.guard.check(action, target, self._history(workload))
        if not decision.allowed and not self._proposal(decision):
            self._record(action, ActionStatus.REFUSED, decision.reason)
            return ToolResult.refused(decision.reason)
        assert target is not None  # the guard refuses a missing target
        reservation: _Slot | None = getattr(decision, "reservation", None)
        try:
            return self._decided(action, ref, target, workload, decision, reservation)
        finally:
            if reservation is not None:
                reservation.release()  # nothing was sent (or it was settled already: then this does nothing)

    def _decided(
        self,
        action: ProposedAction,
        ref: ObjectRef,
        target: dict[str, Any],
        workload: _Workload,
        decision: Decision,
        reservation: _Slot | None,
    ) -> ToolResult:
        """Dry-run, then (unless a proposal or dry-run mode) snapshot and write; settles the reservation."""
        try:
            plan = self._plan(action, target, workload)
        except _NotApplied as refusal:
            self._record(action, ActionStatus.REFUSED, str(refusal))
            return ToolResult.refused(str(refusal))
        try:
            preview = self._send(ref, plan, dry_run=True)
        except ApiCallError as error:
            return self._rejected(action, ref, target, error, reservation)
        diff = self._diff(ref, target, preview)
        if self._proposal(decision):  # outside what the workload ran: shown to a person with its diff, never applied
            reason = f"not applied, proposed to a person: {decision.reason}"
            self._record(action, ActionStatus.PROPOSED, reason, diff)
            proposed = {
                "status": ActionStatus.PROPOSED.value,
                "summary": self._summary(action),
                "diff": diff,
                "note": reason,
            }
            return ToolResult.success(proposed)
        if self.access.settings.dry_run:
            self._count(reservation)
            self._record(action, ActionStatus.DRY_RUN, "dry-run mode: validated by the API server, not applied", diff)
            return ToolResult.success(
                {"status": ActionStatus.DRY_RUN.value, "summary": self._summary(action), "diff": diff}
            )

        snapshot_id = None
        if not isinstance(action, DeletePod):
            try:
                snapshot_id = self._ensure_snapshot(ref)
            except ApiCallError as error:  # no snapshot, no change: a failed fix could not be undone
                text = f"snapshot before the change failed, nothing changed: {error}"
                self._record(action, ActionStatus.FAILED, text)
                return ToolResult.failure(self.access.redactor.redact_text(text))
        try:
            after = self._send(ref, plan, dry_run=False)
        except ApiCallError as error:
            return self._rejected(action, ref, target, error, reservation)
        self._count(reservation)
        if after is not None and objects.meta(after).get("generation") is not None:
            self._written_generation[ref] = int(objects.meta(after)["generation"])
        diff = self._diff(ref, target, after) if after is not None else diff
        note = ""
        if isinstance(action, Rollback):
            replaced, problems = replace_failing_pods(self.access, ref, dry_run=False)
            if replaced:
                note = f"evicted failing pod(s) {', '.join(replaced)} so the controller re-creates them"
            note = "; ".join(part for part in (note, *problems) if part)
        self._record(action, ActionStatus.APPLIED, note, diff)
        data: dict[str, Any] = {"status": ActionStatus.APPLIED.value, "summary": self._summary(action), "diff": diff}
        if note:
            data["note"] = note
        if snapshot_id:
            data["snapshot_id"] = snapshot_id
        return ToolResult.success(data)

    @staticmethod
    def _proposal(decision: Decision) -> bool:
        return bool(getattr(decision, "proposal", False))

    def _count(self, reservation: _Slot | None) -> None:
        if reservation is not None:
            reservation.commit()
        else:
            self.guard.note_action()

    def _rejected(
        self,
        action: ProposedAction,
        ref: ObjectRef,
        target: dict[str, Any],
        error: ApiCallError,
        reservation: _Slot | None,
    ) -> ToolResult:
        result = self._write_failed(action, ref, target, error)  # raises _Retry when only status moved
        if reservation is not None:
            reservation.reject()  # the API said no: counts toward the session, frees the hourly slot
        return result

    def _write_failed(
        self, action: ProposedAction, ref: ObjectRef, target: dict[str, Any], error: ApiCallError
    ) -> ToolResult:
        text = self.access.redactor.redact_text(str(error))
        if error.conflict:
            if ref.kind != "Pod" and self._only_status_moved(ref, target):
                raise _Retry
            reason = f"conflict: {ref.kind}/{ref.name} was changed by someone else after AMOS read it; not overwritten"
            self._record(action, ActionStatus.FAILED, reason)
            return ToolResult.failure(f"{reason} ({text})", ToolStatus.CONFLICT)
        self._record(action, ActionStatus.FAILED, text)
        return ToolResult.failure(text)

    def _only_status_moved(self, ref: ObjectRef, seen: dict[str, Any]) -> bool:
        """True when the object's spec is as it was read (same generation): a status write caused the 409."""
        current = self._read_or_none(ref)
        if current is None:
            return False
        return objects.meta(current).get("generation") == objects.meta(seen).get("generation")

    def _read_or_none(self, ref: ObjectRef) -> dict[str, Any] | None:
        try:
            return self.access.get(ref.kind, ref.namespace, ref.name)
        except ApiCallError as error:
            if error.status == 404:
                return None
            raise

    def _workload(self, action: ProposedAction, target: dict[str, Any] | None) -> _Workload:
        """The incident's workload (for a pod: its owner), its history, pods and known-good state."""
        scope = self.guard.scope
        if isinstance(action, DeletePod):
            obj = self._read_or_none(ObjectRef(kind=scope.kind, namespace=scope.namespace, name=scope.name))
        else:
            obj = target
        if obj is None:
            return _Workload()
        kind = obj.get("kind")
        history = self.access.history_of(obj)
        pods = self.access.pods_of(obj) if kind in k8s.WORKLOAD_KINDS else []
        judged = self.known_good.judge(obj, history, pods) if self.known_good is not None else {}
        templates = self.known_good.job_templates(obj) if self.known_good is not None and kind == "CronJob" else {}
        return _Workload(obj=obj, history=history, pods=pods, judged=judged, job_templates=templates)

    @staticmethod
    def _history(workload: _Workload) -> WorkloadHistory:
        """What the guard judges values against. Fields the guard does not declare yet are left out."""
        if workload.obj is None:
            return WorkloadHistory()
        offered: dict[str, Any] = {
            "workload": workload.obj,
            "replicasets": [entry for entry in workload.history if entry.get("kind") == "ReplicaSet"],
            "controller_revisions": [entry for entry in workload.history if entry.get("kind") == "ControllerRevision"],
            "known_good_job_templates": [template for _, template in sorted(workload.job_templates.items())],
            "known_bad": workload.known_bad(),
            "known_good": workload.known_good(),
            "effective_resources": workload.effective_resources(),
        }
        declared = WorkloadHistory.model_fields
        return WorkloadHistory(**{key: value for key, value in offered.items() if key in declared})

    def _rollback_target(self, action: Rollback, workload: _Workload) -> Rollback:
        """The revision a rollback goes to: the one asked for unless known-bad, else the newest known-good one."""
        if self.known_good is None or workload.obj is None:
            return action
        if action.to_revision is not None:
            if action.to_revision in workload.known_bad():
                raise _NotApplied(
                    f"revision {action.to_revision} of {action.kind}/{action.name} is known-bad "
                    f"(AMOS saw it failing); {workload.judged.get('reason', '')}".rstrip("; ")
                )
            return action
        number = workload.judged.get("target")
        if number is None:
            raise _NotApplied(str(workload.judged.get("reason") or "no known-good revision to roll back to"))
        return action.model_copy(update={"to_revision": int(number)})

    def _plan(self, action: ProposedAction, target: dict[str, Any], workload: _Workload) -> _Plan:
        rv = objects.meta(target).get("resourceVersion")
        precondition = {"metadata": {"resourceVersion": rv}}
        match action:
            case DeletePod():
                return _Plan("evict", {"uid": objects.meta(target).get("uid")})
            case Scale():
                return _Plan("patch", precondition | {"spec": {"replicas": action.replicas}})
            case RestartRollout():
                stamp = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
                template = {"metadata": {"annotations": {k8s.RESTARTED_AT_ANNOTATION: stamp}}}
                return _Plan("patch", precondition | {"spec": {"template": template}})
            case Rollback():
                return _Plan("replace", self._rollback_body(action, target, workload))
        field, container = objects.find_container(target, action.container) or ("containers", {})
        change: dict[str, Any] = {"name": action.container}
        match action:
            case SetImage():
                change["image"] = action.image
            case SetResources():
                resources: dict[str, dict[str, str]] = {}
                for (section, resource), value in action.changes().items():
                    resources.setdefault(section, {})[resource] = value
                change["resources"] = resources
            case SetEnv():
                change["env"] = [{"name": action.env_name, "value": action.value}]
            case SetArgs():
                if action.command is not None:
                    change["command"] = action.command
                if action.args is not None:
                    change["args"] = action.args
            case FixProbe():
                change[action.field] = action.patch_of(container.get(action.field) or {})
        return _Plan("patch", precondition | {"spec": {"template": {"spec": {field: [change]}}}})

    @staticmethod
    def _rollback_body(action: Rollback, target: dict[str, Any], workload: _Workload) -> dict[str, Any]:
        """The workload with an earlier revision's template, as `kubectl rollout undo` writes it.

        Without a revision number: the newest one before the current (kubectl's "previous").
        """
        kind = target.get("kind")
        if kind == "CronJob":
            templates = workload.job_templates
            number = action.to_revision if action.to_revision is not None else max(templates, default=None)
            if number is None or number not in templates:
                raise _NotApplied(f"CronJob/{action.name} has no recorded job template {number or ''}".rstrip())
            template = copy.deepcopy(templates[number])
        else:
            by_number = {objects.revision(entry): entry for entry in workload.history}
            number = action.to_revision
            if number is None:
                current = objects.current_history_entry(target, workload.history)
                limit = objects.revision(current) if current is not None else None
                earlier = [n for n in by_number if n is not None and (limit is None or n < limit)]
                number = max(earlier, default=None)
            if number is None or number not in by_number:
                raise _NotApplied(f"{kind}/{action.name} has no revision {number or 'before the current one'}")
            template = objects.revision_template(by_number[number])
        body = objects.without_managed_fields(target)
        body.pop("status", None)
        body["spec"][objects.template_field(kind)] = template
        return body

    def _send(self, ref: ObjectRef, plan: _Plan, *, dry_run: bool) -> dict[str, Any] | None:
        if plan.call == "evict":
            self.access.evict(ref.namespace, ref.name, plan.body["uid"], dry_run=dry_run)
            return None
        if plan.call == "replace":
            return self.access.replace(ref.kind, ref.namespace, ref.name, plan.body, dry_run=dry_run)
        return self.access.patch(ref.kind, ref.namespace, ref.name, plan.body, dry_run=dry_run)

    def _ensure_snapshot(self, ref: ObjectRef) -> str:
        existing = self._snapshot_of.get(ref)
        if existing:
            return existing
        snap = take_snapshot(self.access, ref, self._clock())
        self.snapshots[snap.id] = snap
        self._snapshot_of[ref] = snap.id
        return snap.id

    # --- records --------------------------------------------------------------------------------

    def _diff(self, ref: ObjectRef, before: dict[str, Any], after: dict[str, Any] | None) -> str:
        label = f"{ref.kind}/{ref.name}"
        if ref.kind == "Pod":
            status = before.get("status") or {}
            restarts = sum(int(s.get("restartCount", 0)) for s in status.get("containerStatuses") or [])
            return f"--- {label} (before)\n+++ {label} (after)\n-pod: {status.get('phase')}, {restarts} restarts\n+pod: evicted"
        return spec_diff(before, after, self.access.redactor, label=label)

    def _summary(self, action: ProposedAction) -> str:
        return self.access.redactor.redact_text(action.summary())

    def _record(self, action: ProposedAction, status: ActionStatus, reason: str, diff: str = "") -> None:
        ref = ObjectRef(kind=action.target_kind, namespace=action.namespace, name=action.name)
        self._record_ref(action.action, ref, self._summary(action), status, reason, diff)

    def _record_ref(
        self, verb: str, ref: ObjectRef, summary: str, status: ActionStatus, reason: str, diff: str = ""
    ) -> None:
        redact = self.access.redactor.redact_text
        self.recorder.append(
            ActionRecord(
                verb=verb, target=ref, summary=redact(summary), status=status, reason=redact(reason), diff=diff
            )
        )

    def _error_text(self, error: Exception, call: str) -> str:
        text = str(error) if isinstance(error, ApiCallError) else f"{call} failed: {type(error).__name__}: {error}"
        return self.access.redactor.redact_text(text)
