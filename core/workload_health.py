"""What outage detection reads of a workload, and where it reads it from.

The service's watches already hold every workload of the watched namespaces; listing them again
through the API on every incident costs a list call per kind. A `WorkloadHealthSource` answers from
whatever holds them (the watch cache, or the API where nothing watches), in one typed shape, so
`orchestrator.outage` judges both the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from core import k8s

HEALTH_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")  # what counts: a CronJob wants no pods of its own


class WorkloadHealth(BaseModel):
    """A workload as its controller reports it: how many pods it wants, how many are ready, whether it gave up."""

    model_config = ConfigDict(frozen=True)

    kind: str
    name: str
    desired: int = 1  # spec.replicas (default 1); a DaemonSet's desiredNumberScheduled
    ready: int = 0  # readyReplicas; a DaemonSet's numberReady
    stuck: bool = False  # Progressing=False: the rollout passed its deadline
    failed: bool = False  # a Job's Failed=True
    owned: bool = False  # a Job something else created (a CronJob's run): not a workload of its own

    @classmethod
    def from_api(cls, obj: Mapping[str, Any]) -> WorkloadHealth:
        """From the API's JSON (`kind` set, as `ClusterAccess.list_objects` returns it)."""
        kind, meta = str(obj.get("kind") or ""), obj.get("metadata") or {}
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        desired, ready = 1, 0  # a Job's: not counted (it fails or it does not)
        if kind == "DaemonSet":
            desired, ready = status.get("desiredNumberScheduled") or 0, status.get("numberReady") or 0
        elif kind in k8s.SCALABLE_KINDS:
            replicas = spec.get("replicas")
            desired, ready = 1 if replicas is None else replicas, status.get("readyReplicas") or 0
        return cls(
            kind=kind,
            name=str(meta.get("name") or ""),
            desired=int(desired),
            ready=int(ready),
            stuck=kind in k8s.SCALABLE_KINDS and conditions.get("Progressing") == "False",
            failed=kind == "Job" and conditions.get("Failed") == "True",
            owned=kind == "Job" and bool(meta.get("ownerReferences")),
        )


class ListingState(StrEnum):
    LISTED = "listed"
    NOT_YET = "not_yet"  # this source has not listed the namespace (yet): ask another
    UNREADABLE = "unreadable"  # the role may not list it, or the read failed: outage detection is skipped


class WorkloadListing(BaseModel):
    """A namespace's workloads, or why there are none to judge."""

    namespace: str
    state: ListingState
    workloads: tuple[WorkloadHealth, ...] = ()
    reason: str = ""  # why not LISTED


class WorkloadHealthSource(Protocol):
    def workloads(self, namespace: str) -> WorkloadListing: ...
