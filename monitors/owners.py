"""Which workload a pod belongs to: the object a fix would change, and the key incidents group by.

Pod -> ReplicaSet -> Deployment and Pod -> Job -> CronJob go through an index fed
by the ReplicaSet and Job watches, so resolving a pod never calls the API; every
run of a CronJob therefore resolves to the CronJob. StatefulSet and DaemonSet pods
name their workload in their own controller reference. The index holds one short
entry per live ReplicaSet or Job and drops deleted ones, so it stays as large as
the cluster, no larger.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from core.models import ObjectRef
from monitors.trim import JobView, PodView, ReplicaSetView

# intermediate owner kind -> the kind of the workload that controls it
_PARENT_KINDS = {"ReplicaSet": "Deployment", "Job": "CronJob"}

Owned = ReplicaSetView | JobView


class OwnerIndex:
    """(kind, namespace, name) of a ReplicaSet or Job -> its controlling workload's name; thread-safe."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._max_entries = max_entries
        self._parents: dict[tuple[str, str, str], str | None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._parents)

    def observe(self, owned: Owned) -> None:
        key = (_kind(owned), owned.namespace, owned.name)
        with self._lock:
            if key not in self._parents and len(self._parents) >= self._max_entries:
                # A safety cap only: evict the oldest entry; `workload_of` still resolves ReplicaSets by name.
                del self._parents[next(iter(self._parents))]
            self._parents[key] = _parent(owned)

    def forget(self, namespace: str, name: str, kind: str = "ReplicaSet") -> None:
        with self._lock:
            self._parents.pop((kind, namespace, name), None)

    def replace(self, namespace: str | None, owned: Iterable[Owned], kind: str = "ReplicaSet") -> None:
        """After a re-list: the `kind` objects of `namespace` (all when None) are exactly these."""
        fresh = {(kind, o.namespace, o.name): _parent(o) for o in owned}
        with self._lock:
            kept = {
                k: v for k, v in self._parents.items() if k[0] != kind or (namespace is not None and k[1] != namespace)
            }
            self._parents = kept | fresh

    def workload_of(self, pod: PodView) -> ObjectRef:
        owner = pod.controller
        if owner is None:
            return ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name)
        parent_kind = _PARENT_KINDS.get(owner.kind)
        if parent_kind is None:  # StatefulSet, DaemonSet, ...: the owner is the workload
            return ObjectRef(kind=owner.kind, namespace=pod.namespace, name=owner.name)
        key = (owner.kind, pod.namespace, owner.name)
        with self._lock:
            known = key in self._parents
            parent = self._parents.get(key)
        if not known and owner.kind == "ReplicaSet":
            parent = _deployment_by_name(owner.name, pod.pod_template_hash)
        if parent is None:
            return ObjectRef(kind=owner.kind, namespace=pod.namespace, name=owner.name)
        return ObjectRef(kind=parent_kind, namespace=pod.namespace, name=parent)


def workload_of_job(job: JobView) -> ObjectRef:
    """A Job made by a CronJob is a run of the CronJob; any other Job is its own workload."""
    cron_job = job.cron_job
    if cron_job is not None:
        return ObjectRef(kind="CronJob", namespace=job.namespace, name=cron_job)
    return ObjectRef(kind="Job", namespace=job.namespace, name=job.name)


def _kind(owned: Owned) -> str:
    return "ReplicaSet" if isinstance(owned, ReplicaSetView) else "Job"


def _parent(owned: Owned) -> str | None:
    return owned.deployment if isinstance(owned, ReplicaSetView) else owned.cron_job


def _deployment_by_name(replica_set: str, template_hash: str | None) -> str | None:
    """The Deployment controller names its ReplicaSets `<deployment>-<pod-template-hash>`.

    Used only when the ReplicaSet watch has not caught up yet (pod and ReplicaSet
    events arrive on different streams).
    """
    suffix = f"-{template_hash}" if template_hash else None
    if suffix is None or not replica_set.endswith(suffix) or len(replica_set) == len(suffix):
        return None
    return replica_set[: -len(suffix)]
