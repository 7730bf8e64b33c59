"""When a workload's current revision is healthy and stable: the known-good signal AMOS records.

Pure rules from one workload view, plus the stability rule with `now` passed in:
healthy status and no fault on the workload for a stable window. The watch loop
resolves which revision is current (see `revisions`) and `known_good` fires once
per revision; the orchestrator persists what it is told.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from core.models import ObjectRef
from monitors.trim import DaemonSetView, DeploymentView, JobView, StatefulSetView

STABLE_WINDOW_SECONDS = 60.0  # like a generous minReadySeconds: healthy this long, with no fault, is known-good


class HealthyRevision(BaseModel):
    """A revision of a workload seen healthy and stable."""

    model_config = ConfigDict(frozen=True)

    workload: ObjectRef
    revision: int | None  # Deployment revision annotation, ControllerRevision number; None for a CronJob
    template_hash: str  # pod-template-hash, ControllerRevision name, or `templates.hash_pod_template` of a Job
    source: ObjectRef | None = None  # the ReplicaSet, ControllerRevision or succeeded Job holding the template
    observed_at: datetime

    @property
    def job(self) -> str | None:
        """For a CronJob: the name of the Job that succeeded with this template."""
        return self.source.name if self.source is not None and self.source.kind == "Job" else None


def deployment_healthy(d: DeploymentView) -> bool:
    """Every replica updated, ready and available, and the spec observed."""
    return (
        d.replicas > 0
        and d.observed_generation == d.generation
        and d.updated_replicas == d.replicas == d.ready_replicas == d.available_replicas
        and d.unavailable_replicas == 0
    )


def statefulset_healthy(s: StatefulSetView) -> bool:
    return (
        s.replicas > 0
        and s.observed_generation == s.generation
        and bool(s.update_revision)
        and s.current_revision == s.update_revision
        and s.ready_replicas == s.replicas
    )


def daemonset_healthy(d: DaemonSetView) -> bool:
    return (
        d.desired > 0
        and d.observed_generation == d.generation
        and d.ready == d.desired == d.updated
        and d.unavailable == 0
    )


def job_healthy(j: JobView) -> bool:
    return j.succeeded


def stable_at(healthy_since: datetime, last_fault_at: datetime | None, window: timedelta) -> datetime:
    """When a revision healthy since `healthy_since` becomes known-good, if nothing goes wrong meanwhile."""
    return max(healthy_since, last_fault_at or healthy_since) + window


def is_stable(healthy_since: datetime, last_fault_at: datetime | None, now: datetime, window: timedelta) -> bool:
    """Healthy, and no fault on the workload, for the whole window up to `now`."""
    return last_fault_at != now and now >= stable_at(healthy_since, last_fault_at, window)
