"""Is a namespace in an outage, or the cluster in a storm? Then AMOS changes nothing and tells a person once.

A workload counts as failing when its controller says so (fewer ready replicas than wanted, a stuck
rollout, a failed Job) or when it has an open incident (a bad rollout whose old pods still serve).
Scaled-to-zero workloads and a CronJob's runs do not count. Pure: `guardrails.IncidentGate` reads
the workloads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel

from core import k8s
from core.config import Settings
from tools import objects


class NamespaceHealth(BaseModel):
    namespace: str
    total: int
    failing: list[str]

    @property
    def ratio(self) -> float:
        return len(self.failing) / self.total if self.total else 0.0


class Storm(BaseModel):
    """Workloads that started failing cluster-wide within the storm window (a bad base image, a bad node)."""

    workloads: list[str]
    window_seconds: float


def _desired(obj: dict[str, Any]) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def workload_failing(obj: dict[str, Any]) -> bool | None:
    """True/False for a workload that counts towards outage detection, None for one that does not."""
    kind, status = obj.get("kind"), obj.get("status") or {}
    if kind in k8s.SCALABLE_KINDS:
        desired = _desired(obj)
        if desired == 0:
            return None
        progressing = _condition(obj, "Progressing")
        stuck = progressing is not None and progressing.get("status") == "False"
        return stuck or int(status.get("readyReplicas") or 0) < desired
    if kind == "DaemonSet":
        desired = int(status.get("desiredNumberScheduled") or 0)
        return None if desired == 0 else int(status.get("numberReady") or 0) < desired
    if kind == "Job":
        failed = _condition(obj, "Failed")
        return failed is not None and failed.get("status") == "True"
    return None


def namespace_health(namespace: str, workloads: list[dict[str, Any]], faulty: Iterable[str] = ()) -> NamespaceHealth:
    """`faulty`: workloads (`Kind/name`) with an open incident, e.g. a bad rollout whose old pods still serve."""
    counted = [
        (f"{obj.get('kind')}/{objects.meta(obj).get('name')}", bad)
        for obj in workloads
        if (bad := workload_failing(obj)) is not None
    ]
    names = {name for name, _ in counted}
    failing = [name for name, bad in counted if bad]
    extra = sorted(set(faulty) - set(failing))
    return NamespaceHealth(
        namespace=namespace, total=len(counted) + len(set(extra) - names), failing=sorted(failing + extra)
    )


def is_outage(health: NamespaceHealth, settings: Settings) -> bool:
    return health.total >= settings.outage_min_workloads and health.ratio >= settings.outage_failing_ratio
