"""Putting a snapshot back without ever overwriting someone else's change.

The restore is fenced by generation: the workload's spec generation must still be the one
AMOS's own last write produced (kept in the journal, so the fence survives a restart). A
different generation means someone else changed the spec since: AMOS does not restore and
escalates. Between the read and the write, the resourceVersion precondition closes the
window (a 409 is re-read; if only status moved, the restore goes on).
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from core.models import ObjectRef
from core.report import ActionRecord, ActionStatus
from orchestrator.verify import same_spec
from tools import objects
from tools.cluster import FIELD_MANAGER, ApiCallError, ClusterAccess
from tools.diff import spec_diff
from tools.policy import PolicyGuard
from tools.snapshot import Snapshot

MAX_TRIES = 3
RESTORABLE_KINDS = ("Deployment", "Job")


class RestoreResult(BaseModel):
    ok: bool
    changed: bool = False
    conflict: bool = False
    reason: str = ""
    record: ActionRecord | None = None
    generation: int | None = None


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
    return ActionRecord(verb="restore", target=ref, summary=f"restore {ref.kind}/{ref.name} from snapshot {snapshot.id}",
                        status=status, reason=reason, diff=diff)


def restore_snapshot(access: ClusterAccess, guard: PolicyGuard, snapshot: Snapshot,
                     expected_generation: int | None) -> RestoreResult:
    """Replace the workload's spec with the snapshot's, if its generation is still `expected_generation`."""
    ref = snapshot.target
    if ref.kind not in RESTORABLE_KINDS:
        return RestoreResult(ok=True, reason=f"nothing to restore for a {ref.kind} (an evicted pod is re-created "
                                             "by its controller)")
    redactor = access.redactor
    for _ in range(MAX_TRIES):
        try:
            current: dict[str, Any] | None = access.get(ref.kind, ref.namespace, ref.name)
        except ApiCallError as error:
            if error.status != 404:
                reason = f"could not read {ref}: {error}"
                return RestoreResult(ok=False, reason=reason, record=_record(ref, snapshot, ActionStatus.FAILED, reason))
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
            return RestoreResult(ok=False, reason=f"restore refused by policy: {decision.reason}",
                                 record=_record(ref, snapshot, ActionStatus.REFUSED, decision.reason))
        if expected_generation is not None and generation != expected_generation:
            reason = (f"conflict: the spec of {ref.kind}/{ref.name} was changed by someone else after AMOS's last "
                      f"change (generation {generation}, AMOS wrote {expected_generation}); not overwritten")
            return RestoreResult(ok=False, conflict=True, reason=reason, generation=generation,
                                 record=_record(ref, snapshot, ActionStatus.FAILED, reason))
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
        return RestoreResult(ok=True, changed=True, reason="the snapshot was put back",
                             generation=int(objects.meta(after).get("generation") or 0),
                             record=_record(ref, snapshot, ActionStatus.APPLIED, "", diff))
    reason = f"{ref} kept changing while AMOS tried to restore it; not restored"
    return RestoreResult(ok=False, conflict=True, reason=reason, record=_record(ref, snapshot, ActionStatus.FAILED, reason))
