"""Typed models that cross module boundaries: what a fault is, and what an incident groups.

Monitors produce `Fault`s, the detector groups them into `Incident`s, and the
orchestrator, agents and notifications consume those. Nothing here talks to a
cluster or a model.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class FaultKind(StrEnum):
    CRASH_LOOP = "CrashLoopBackOff"
    IMAGE_PULL = "ImagePullBackOff"
    OOM_KILLED = "OOMKilled"
    CONTAINER_CONFIG = "CreateContainerConfigError"
    UNSCHEDULABLE = "Unschedulable"
    ROLLOUT_STUCK = "ProgressDeadlineExceeded"
    REPLICAS_UNAVAILABLE = "ReplicasUnavailable"
    JOB_FAILED = "JobFailed"
    INIT_CONTAINER = "InitContainerFailed"  # an init container cannot pull, crashes or exits non-zero
    LIVENESS_FAILED = "LivenessProbeFailed"  # restarts caused by a failing liveness probe
    NOT_READY = "ReadinessProbeFailed"  # Running but never Ready past a grace period
    FAILED_CREATE = "FailedCreate"  # the controller cannot create pods (quota, LimitRange, admission)
    REQUESTED = "RequestedFix"  # a person asked for a fix (adk web, an approved proposal): no pattern fired


class ObjectRef(BaseModel):
    """A namespaced Kubernetes object, by kind and name."""

    model_config = ConfigDict(frozen=True)

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name} -n {self.namespace}"


class Evidence(BaseModel):
    """What was observed, in the words the cluster used."""

    model_config = ConfigDict(frozen=True)

    reason: str
    message: str = ""
    container: str | None = None
    exit_code: int | None = None
    restart_count: int | None = None
    since: datetime | None = None


class Fault(BaseModel):
    """One failure pattern seen on one object (a pod, a Deployment or a Job)."""

    model_config = ConfigDict(frozen=True)

    kind: FaultKind
    workload: ObjectRef  # the owner that a fix would change (Deployment, Job, or a bare Pod)
    subject: ObjectRef  # the object the pattern was seen on
    evidence: Evidence
    observed_at: datetime

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.workload, self.kind)


def fingerprint(workload: ObjectRef, kind: FaultKind) -> str:
    """Stable key of a fault: 50 crashing pods of one Deployment share it."""
    raw = f"{workload.kind}/{workload.namespace}/{workload.name}/{kind.value}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class IncidentState(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Incident(BaseModel):
    """A deduplicated fault on one workload, with every affected object listed."""

    id: str
    fingerprint: str
    kind: FaultKind
    workload: ObjectRef
    occurrence: int = Field(
        default=1, description="1 for the first time this fingerprint fired, 2 when it came back, ..."
    )
    state: IncidentState = IncidentState.OPEN
    first_seen: datetime
    last_seen: datetime
    affected: list[ObjectRef] = Field(default_factory=list)
    evidence: list[Evidence] = Field(default_factory=list)
    detected_latency_seconds: float | None = None

    @property
    def title(self) -> str:
        return f"{self.kind.value} on {self.workload}"
