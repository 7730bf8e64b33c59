"""What a workload looked like before AMOS touched it: enough to put it back.

The full object JSON of the workload, its ReplicaSets and the ConfigMaps its pods
reference (never Secrets). Keeping snapshots durably is the orchestrator's job.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.models import ObjectRef
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess

SNAPSHOT_KINDS = ("Deployment", "Job", "Pod")


class Snapshot(BaseModel):
    id: str
    taken_at: datetime
    target: ObjectRef
    workload: dict[str, Any]
    replicasets: list[dict[str, Any]] = Field(default_factory=list)
    config_maps: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def generation(self) -> int | None:
        value = objects.meta(self.workload).get("generation")
        return int(value) if value is not None else None

    @property
    def resource_version(self) -> str | None:
        value = objects.meta(self.workload).get("resourceVersion")
        return str(value) if value is not None else None

    def objects(self) -> list[str]:
        """`Kind/name` of everything held, for logs and the model."""
        held = [self.workload, *self.replicasets, *self.config_maps]
        return [f"{obj.get('kind')}/{objects.meta(obj).get('name')}" for obj in held]


def take_snapshot(access: ClusterAccess, target: ObjectRef, now: datetime) -> Snapshot:
    """Read the workload and what belongs to it; raises ApiCallError when the workload cannot be read."""
    if target.kind not in SNAPSHOT_KINDS:
        raise ValueError(f"cannot snapshot a {target.kind}; supported: {', '.join(SNAPSHOT_KINDS)}")
    workload = access.get(target.kind, target.namespace, target.name)
    workload.setdefault("kind", target.kind)
    replicasets = access.replicasets_of(workload) if target.kind == "Deployment" else []
    config_maps = []
    for kind, name in sorted(objects.config_refs(workload)):
        if kind != "ConfigMap":
            continue  # Secret values are never copied out of the cluster
        try:
            config_maps.append(objects.without_managed_fields(access.get("ConfigMap", target.namespace, name)))
        except ApiCallError as error:
            if error.status != 404:
                raise
    return Snapshot(
        id=f"{target.kind.lower()}-{target.name}-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
        taken_at=now,
        target=target,
        workload=objects.without_managed_fields(workload),
        replicasets=[objects.without_managed_fields(rs) for rs in replicasets],
        config_maps=config_maps,
    )
