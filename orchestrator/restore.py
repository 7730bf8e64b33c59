"""Putting a snapshot back without ever overwriting someone else's change, and never writing a forged one.

The restore is fenced by generation: the workload's spec generation must still be the one
AMOS's own last write produced (kept in the journal, so the fence survives a restart). A
different generation means someone else changed the spec since: AMOS does not restore and
escalates. Between the read and the write, the resourceVersion precondition closes the
window (a 409 is re-read; if only status moved, the restore goes on).

A snapshot is state read back from the cluster, so it is checked before it is written: it must
have been taken from this very object (same uid), its template must be one the workload ran (a
ReplicaSet or ControllerRevision it controls, a Job its CronJob created, or the Job's own
immutable template) unless the caller vouches for it (`trusted`: the snapshot AMOS took itself in
this process), and outside the template only `replicas` may differ from the live spec.

StatefulSets and DaemonSets: the template is put back like `kubectl rollout undo` does (the whole
template, `updateStrategy` and `partition` untouched: the controller rolls the pods at or above the
partition back). A StatefulSet waits for a broken pod to become Ready before reverting it, and an
`OnDelete` StatefulSet or DaemonSet never replaces a pod, so AMOS evicts the pods that are not
Ready and not on the restored revision (`tools.write.replace_failing_pods`); Ready pods are left.
"""

from __future__ import annotations

import copy
import time
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from core import k8s
from core.models import ObjectRef
from core.report import ActionRecord, ActionStatus
from orchestrator.verify import same_spec
from tools import objects
from tools.cluster import FIELD_MANAGER, ApiCallError, ClusterAccess
from tools.diff import spec_diff
from tools.policy import PolicyGuard
from tools.snapshot import Snapshot
from tools.write import replace_failing_pods

MAX_TRIES = 10  # a rollout in progress moves resourceVersion with every status write: a restore must get through it
CONFLICT_BACKOFF_SECONDS = 0.1  # doubled after each conflict, at most 1 s
FREE_SPEC_FIELDS = frozenset({"replicas"})  # what a restore may set outside the template (AMOS's scale)


class RestoreResult(BaseModel):
    ok: bool
    changed: bool = False
    conflict: bool = False
    refused: bool = False  # the snapshot failed an integrity check: nothing was written
    reason: str = ""
    record: ActionRecord | None = None
    generation: int | None = None
    replaced_pods: list[str] = []


def foreign_spec_writers(obj: dict[str, Any], since: datetime, own_manager: str = FIELD_MANAGER) -> list[str]:
    """Field managers other than AMOS that wrote the spec at or after `since` (from `managedFields`).

    Used when the journal cannot tell which generation AMOS wrote (a restart in the middle of a
    session). Times have whole seconds, so a write in the same second counts as foreign (safe side).
    """
    horizon = since.replace(microsecond=0)
    found = []
    for entry in objects.meta(obj).get("managedFields") or []:
        if entry.get("manager") == own_manager or entry.get("subresource"):
            continue
        if "f:spec" not in (entry.get("fieldsV1") or {}):
            continue
        written = entry.get("time")
        try:
            when = datetime.fromisoformat(str(written))
        except ValueError:
            continue
        if when >= horizon:
            found.append(f"{entry.get('manager')} at {written}")
    return found


def _record(ref: ObjectRef, snapshot: Snapshot, status: ActionStatus, reason: str = "", diff: str = "") -> ActionRecord:
    return ActionRecord(
        verb="restore",
        target=ref,
        summary=f"restore {ref.kind}/{ref.name} from snapshot {snapshot.id}",
        status=status,
        reason=reason,
        diff=diff,
    )


def _known_templates(access: ClusterAccess, current: dict[str, Any]) -> set[str]:
    """Digests of the templates the workload ran: its live history, its CronJob's Jobs, a Job's own template."""
    kind = current.get("kind")
    if kind == "CronJob":
        jobs = access.jobs_of(current)
        return {objects.template_digest(objects.job_pod_template(job)) for job in jobs}
    if kind == "Job":
        return {objects.template_digest(objects.workload_template(current))}
    return {objects.template_digest(objects.revision_template(entry)) for entry in access.history_of(current)}


def _restored_template_digest(snapshot: Snapshot) -> str:
    template = objects.workload_template(snapshot.workload)
    if snapshot.target.kind == "CronJob":  # a CronJob's Jobs carry its job template's pod template
        template = (template.get("spec") or {}).get("template") or {}
    return objects.template_digest(template)


def integrity_problem(
    access: ClusterAccess, snapshot: Snapshot, current: dict[str, Any], *, trusted: bool, max_replicas: int
) -> str | None:
    """Why this snapshot must not be written to `current`; None when it may."""
    ref = snapshot.target
    if snapshot.workload.get("kind", ref.kind) != ref.kind or objects.meta(snapshot.workload).get("name") != ref.name:
        return "the snapshot holds another object than the one it names"
    uid = objects.meta(current).get("uid")
    if not snapshot.uid or snapshot.uid != uid:
        return (
            f"the snapshot was taken from another object (uid {snapshot.uid or 'missing'}) than the live "
            f"{ref.kind}/{ref.name} (uid {uid}): it was deleted and created again, or the snapshot is forged"
        )
    field = objects.template_field(ref.kind)
    wanted, live = snapshot.workload.get("spec") or {}, current.get("spec") or {}
    for key in sorted((set(wanted) | set(live)) - {field} - FREE_SPEC_FIELDS):
        if wanted.get(key) != live.get(key):
            return f"the snapshot changes spec.{key}, which AMOS never changes"
    replicas = wanted.get("replicas")
    if replicas is not None and (
        isinstance(replicas, bool)
        or not isinstance(replicas, int)
        or not 0 <= replicas <= max(max_replicas, int(live.get("replicas") or 0))
    ):
        return f"the snapshot sets replicas to {replicas!r}, outside [0, {max_replicas}]"
    if not trusted and _restored_template_digest(snapshot) not in _known_templates(access, current):
        return (
            f"the snapshot's {field} is not one this {ref.kind} ran (no ReplicaSet, ControllerRevision or Job "
            "of it holds that template)"
        )
    return None


def restore_snapshot(
    access: ClusterAccess,
    guard: PolicyGuard,
    snapshot: Snapshot,
    expected_generation: int | None,
    *,
    trusted: bool = False,
) -> RestoreResult:
    """Replace the workload's spec with the snapshot's, if its generation is still `expected_generation`.

    `trusted`: the caller took this snapshot itself in this process (or verified its signature), so
    its template need not be found in the workload's live history; the other checks always apply.
    """
    ref = snapshot.target
    if ref.kind not in k8s.WORKLOAD_KINDS:
        return RestoreResult(
            ok=True, reason=f"nothing to restore for a {ref.kind} (an evicted pod is re-created by its controller)"
        )
    redactor = access.redactor
    for try_ in range(MAX_TRIES):
        if try_:
            time.sleep(min(CONFLICT_BACKOFF_SECONDS * 2 ** (try_ - 1), 1.0))
        try:
            current: dict[str, Any] | None = access.get(ref.kind, ref.namespace, ref.name)
        except ApiCallError as error:
            if error.status != 404:
                reason = f"could not read {ref}: {error}"
                return RestoreResult(
                    ok=False, reason=reason, record=_record(ref, snapshot, ActionStatus.FAILED, reason)
                )
            current = None
        if current is None:
            reason = f"{ref} no longer exists; nothing was restored"
            return RestoreResult(ok=False, reason=reason, record=_record(ref, snapshot, ActionStatus.FAILED, reason))
        current.setdefault("kind", ref.kind)
        generation = int(objects.meta(current).get("generation") or 0)
        if same_spec(current, snapshot.workload):
            return RestoreResult(ok=True, reason="the spec already matches the snapshot", generation=generation)
        decision = guard.check_restore(current)
        if not decision.allowed:
            return RestoreResult(
                ok=False,
                refused=True,
                reason=f"restore refused by policy: {decision.reason}",
                record=_record(ref, snapshot, ActionStatus.REFUSED, decision.reason),
            )
        problem = integrity_problem(
            access, snapshot, current, trusted=trusted, max_replicas=access.settings.max_replicas
        )
        if problem is not None:
            reason = f"restore refused: {problem}"
            return RestoreResult(
                ok=False, refused=True, reason=reason, record=_record(ref, snapshot, ActionStatus.REFUSED, problem)
            )
        if expected_generation is not None and generation != expected_generation:
            reason = (
                f"conflict: the spec of {ref.kind}/{ref.name} was changed by someone else after AMOS's last "
                f"change (generation {generation}, AMOS wrote {expected_generation}); not overwritten"
            )
            return RestoreResult(
                ok=False,
                conflict=True,
                reason=reason,
                generation=generation,
                record=_record(ref, snapshot, ActionStatus.FAILED, reason),
            )
        body = objects.without_managed_fields(current)
        body.pop("status", None)
        body["spec"] = copy.deepcopy(snapshot.workload.get("spec") or {})
        try:
            access.replace(ref.kind, ref.namespace, ref.name, body, dry_run=True)
            after = access.replace(ref.kind, ref.namespace, ref.name, body, dry_run=False)
        except ApiCallError as error:
            if error.conflict:
                continue  # re-read: a status write moves resourceVersion; a spec write moves the generation
            reason = redactor.redact_text(str(error))
            return RestoreResult(ok=False, reason=reason, record=_record(ref, snapshot, ActionStatus.FAILED, reason))
        diff = spec_diff(current, after, redactor, label=f"{ref.kind}/{ref.name}")
        reason = "the snapshot was put back"
        replaced, problems = replace_failing_pods(access, ref, dry_run=False)
        if replaced:
            reason += f"; evicted {len(replaced)} failing pod(s) so the controller re-creates them from it"
        if problems:
            reason += f"; could not evict: {'; '.join(problems)}"
        return RestoreResult(
            ok=True,
            changed=True,
            reason=reason,
            replaced_pods=replaced,
            generation=int(objects.meta(after).get("generation") or 0),
            record=_record(ref, snapshot, ActionStatus.APPLIED, "", diff),
        )
    reason = f"{ref} kept changing while AMOS tried to restore it; not restored"
    return RestoreResult(
        ok=False, conflict=True, reason=reason, record=_record(ref, snapshot, ActionStatus.FAILED, reason)
    )
