"""What a workload looked like before AMOS touched it: enough to put it back, and to check what is put back.

The full object JSON of the workload, its rollout history (ReplicaSets of a Deployment,
ControllerRevisions of a StatefulSet or DaemonSet) and the ConfigMaps its pods reference (never
Secrets). A CronJob keeps its job template in its own spec; a Job's and a Pod's spec is kept as is.
Keeping snapshots durably is the orchestrator's job.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core import k8s
from core.models import ObjectRef
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess


class Snapshot(BaseModel):
    id: str
    taken_at: datetime
    target: ObjectRef
    workload: dict[str, Any]
    replicasets: list[dict[str, Any]] = Field(default_factory=list)
    controller_revisions: list[dict[str, Any]] = Field(default_factory=list)
    config_maps: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def generation(self) -> int | None:
        value = objects.meta(self.workload).get("generation")
        return int(value) if value is not None else None

    @property
    def resource_version(self) -> str | None:
        value = objects.meta(self.workload).get("resourceVersion")
        return str(value) if value is not None else None

    @property
    def uid(self) -> str | None:
        """The uid of the workload it was taken from: a restore goes to that object and no other."""
        value = objects.meta(self.workload).get("uid")
        return str(value) if value else None

    @property
    def history(self) -> list[dict[str, Any]]:
        """The rollout history held (ReplicaSets or ControllerRevisions), oldest first."""
        return [*self.replicasets, *self.controller_revisions]

    def objects(self) -> list[str]:
        """`Kind/name` of everything held, for logs and the model."""
        held = [self.workload, *self.history, *self.config_maps]
        return [f"{obj.get('kind')}/{objects.meta(obj).get('name')}" for obj in held]


def _kept(obj: dict[str, Any]) -> dict[str, Any]:
    """The object without managedFields and the last-applied annotation (a second copy of the spec)."""
    return objects.without_last_applied(objects.without_managed_fields(obj))


def take_snapshot(access: ClusterAccess, target: ObjectRef, now: datetime) -> Snapshot:
    """Read the workload and what belongs to it.

    Raises ApiCallError when the workload cannot be read, ValueError for a kind AMOS does not know.
    """
    if target.kind not in k8s.SUBJECT_KINDS:
        raise ValueError(f"cannot snapshot a {target.kind}; supported: {', '.join(k8s.SUBJECT_KINDS)}")
    workload = access.get(target.kind, target.namespace, target.name)
    workload.setdefault("kind", target.kind)
    replicasets = access.replicasets_of(workload) if target.kind == "Deployment" else []
    revisions = access.controller_revisions_of(workload) if target.kind in k8s.CONTROLLER_REVISION_KINDS else []
    config_maps = []
    for kind, name in sorted(objects.config_refs(workload)):
        if kind != "ConfigMap":
            continue  # Secret values are never copied out of the cluster
        try:
            config_maps.append(_kept(access.get("ConfigMap", target.namespace, name)))
        except ApiCallError as error:
            if error.status != 404:
                raise
    return Snapshot(
        id=f"{target.kind.lower()}-{target.name}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
        taken_at=now,
        target=target,
        workload=_kept(workload),
        replicasets=[_kept(rs) for rs in replicasets],
        controller_revisions=[_kept(revision) for revision in revisions],
        config_maps=config_maps,
    )
