"""Which workload a pod belongs to: the object a fix would change, and the key incidents group by.

Pod -> ReplicaSet -> Deployment goes through an index fed by the ReplicaSet watch,
so resolving a pod never calls the API. The index holds one short entry per live
ReplicaSet and drops deleted ones, so it stays as large as the cluster, no larger.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from core.models import ObjectRef
from monitors.trim import PodView, ReplicaSetView


class OwnerIndex:
    """ReplicaSet (namespace, name) -> owning Deployment name; safe to share between watch threads."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._max_entries = max_entries
        self._deployments: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._deployments)

    def observe(self, replica_set: ReplicaSetView) -> None:
        key = (replica_set.namespace, replica_set.name)
        with self._lock:
            if key not in self._deployments and len(self._deployments) >= self._max_entries:
                # A safety cap only: evict the oldest entry; `workload_of` still resolves it by name.
                del self._deployments[next(iter(self._deployments))]
            self._deployments[key] = replica_set.deployment

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._deployments.pop((namespace, name), None)

    def replace(self, namespace: str | None, replica_sets: Iterable[ReplicaSetView]) -> None:
        """After a re-list: the ReplicaSets of `namespace` (all when None) are exactly these."""
        fresh = {(rs.namespace, rs.name): rs.deployment for rs in replica_sets}
        with self._lock:
            kept = {k: v for k, v in self._deployments.items() if namespace is not None and k[0] != namespace}
            self._deployments = kept | fresh

    def workload_of(self, pod: PodView) -> ObjectRef:
        owner = pod.controller
        if owner is None:
            return ObjectRef(kind="Pod", namespace=pod.namespace, name=pod.name)
        if owner.kind != "ReplicaSet":  # Job, StatefulSet, DaemonSet, ...: the owner is the workload
            return ObjectRef(kind=owner.kind, namespace=pod.namespace, name=owner.name)
        with self._lock:
            known = (pod.namespace, owner.name) in self._deployments
            deployment = self._deployments.get((pod.namespace, owner.name))
        if not known:
            deployment = _deployment_by_name(owner.name, pod.pod_template_hash)
        if deployment is None:
            return ObjectRef(kind="ReplicaSet", namespace=pod.namespace, name=owner.name)
        return ObjectRef(kind="Deployment", namespace=pod.namespace, name=deployment)


def _deployment_by_name(replica_set: str, template_hash: str | None) -> str | None:
    """The Deployment controller names its ReplicaSets `<deployment>-<pod-template-hash>`.

    Used only when the ReplicaSet watch has not caught up yet (pod and ReplicaSet
    events arrive on different streams).
    """
    suffix = f"-{template_hash}" if template_hash else None
    if suffix is None or not replica_set.endswith(suffix) or len(replica_set) == len(suffix):
        return None
    return replica_set[: -len(suffix)]
