"""Is a namespace in an outage, or the cluster in a storm? Then AMOS changes nothing and tells a person once.

A workload counts as failing when its controller says so (fewer ready replicas than wanted, a stuck
rollout, a failed Job) or when it has an open incident (a bad rollout whose old pods still serve).
Scaled-to-zero workloads and a CronJob's runs do not count. Pure: a `WorkloadHealthSource` (the
watch cache, or the API listing) reads the workloads for `guardrails.IncidentGate`.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel

from core import k8s
from core.config import Settings
from core.workload_health import WorkloadHealth


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


def workload_failing(workload: WorkloadHealth) -> bool | None:
    """True/False for a workload that counts towards outage detection, None for one that does not."""
    if workload.kind in k8s.SCALABLE_KINDS:
        if workload.desired == 0:
            return None
        return workload.stuck or workload.ready < workload.desired
    if workload.kind == "DaemonSet":
        return None if workload.desired == 0 else workload.ready < workload.desired
    if workload.kind == "Job":
        return None if workload.owned else workload.failed
    return None


def namespace_health(
    namespace: str, workloads: Iterable[WorkloadHealth], faulty: Iterable[str] = ()
) -> NamespaceHealth:
    """`faulty`: workloads (`Kind/name`) with an open incident, e.g. a bad rollout whose old pods still serve."""
    counted = [(f"{w.kind}/{w.name}", bad) for w in workloads if (bad := workload_failing(w)) is not None]
    names = {name for name, _ in counted}
    failing = [name for name, bad in counted if bad]
    extra = sorted(set(faulty) - set(failing))
    return NamespaceHealth(
        namespace=namespace, total=len(counted) + len(set(extra) - names), failing=sorted(failing + extra)
    )


def is_outage(health: NamespaceHealth, settings: Settings) -> bool:
    return health.total >= settings.outage_min_workloads and health.ratio >= settings.outage_failing_ratio
