"""The Kubernetes vocabulary every layer shares: kind names, container reasons, well-known keys, who manages an object.

Written once here so that the monitors, tools, agents and orchestrator cannot disagree on, say,
which reasons mean an image cannot be pulled or which labels say Helm owns an object. Pure: it
reads API JSON (dicts) and never calls the cluster.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity as _parse_quantity

from core.models import Incident

# --- kinds ------------------------------------------------------------------------------------------------

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")  # own a pod template a fix changes
REVISIONED_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")  # keep revisions to go back to
SCALABLE_KINDS = ("Deployment", "StatefulSet")  # `spec.replicas` says how many pods should run
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")  # roll pods out; report `status.observedGeneration`
# Keep their history as ControllerRevisions and own their pods directly (no ReplicaSet between).
CONTROLLER_REVISION_KINDS = ("StatefulSet", "DaemonSet")
POD_CONTROLLER_KINDS = (*CONTROLLER_REVISION_KINDS, "Job")  # a pod's controller reference names the workload itself
SUBJECT_KINDS = (*WORKLOAD_KINDS, "Pod")  # what an incident is about and a snapshot holds: a workload or a bare Pod
READABLE_KINDS = (*SUBJECT_KINDS, "ReplicaSet")  # what `describe` shows and `diagnose` takes
# Made by a controller for its owner (a Deployment's ReplicaSet, a CronJob's Job): the owner is what to fix.
OWNED_KINDS = ("Pod", "ReplicaSet", "Job")

# kubectl's short names, as a report prints them (`kubectl rollout undo deploy/web`); other kinds print lower-case.
SHORT_NAMES = {"Deployment": "deploy", "StatefulSet": "sts", "DaemonSet": "ds", "ReplicaSet": "rs"}
_KINDS = {
    **{kind.lower(): kind for kind in READABLE_KINDS},
    **{short: kind for kind, short in SHORT_NAMES.items()},
    "cj": "CronJob",
    "po": "Pod",
}


def short_name(kind: str) -> str:
    """How a command a person copies names the kind: `deploy`, `sts`, `job`."""
    return SHORT_NAMES.get(kind, kind.lower())


def canonical_kind(value: str) -> str:
    """Models and people write `deployment`, `deployments` or `sts`; the API spells `Deployment`, `StatefulSet`."""
    text = value.strip()
    lowered = text.lower()
    return (
        _KINDS.get(lowered) or _KINDS.get(lowered.removesuffix("s")) or _KINDS.get(lowered.removesuffix("es")) or text
    )


# --- container state reasons (what the kubelet writes in `state.waiting.reason` / `terminated.reason`) ------

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CONTAINER_CONFIG_REASON = "CreateContainerConfigError"  # a ConfigMap, Secret or key the container needs is missing
CREATE_CONTAINER_REASONS = frozenset({CONTAINER_CONFIG_REASON, "CreateContainerError"})
START_FAILURE_REASONS = frozenset({"RunContainerError", "PreCreateHookError", "PostStartHookError"})
CRASH_LOOP_REASON = "CrashLoopBackOff"
OOM_KILLED_REASON = "OOMKilled"
ERROR_REASON = "Error"  # terminated with a non-zero exit code
UNSCHEDULABLE_REASON = "Unschedulable"  # of the PodScheduled condition
# The container started, or was being started, and died: its process is what failed.
CRASH_REASONS = frozenset({CRASH_LOOP_REASON, ERROR_REASON, "RunContainerError"})
# A container whose previous or current run ended in failure, so its log says why.
FAILED_RUN_REASONS = CRASH_REASONS | {OOM_KILLED_REASON, "ContainerCannotRun"}

# --- well-known labels and annotations ----------------------------------------------------------------------

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
# What kubectl and the workload controllers write: revision numbers, change causes, which template made a pod.
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"  # on a Deployment and its ReplicaSets
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"  # a second copy of the spec
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"  # `kubectl rollout restart` stamps the template
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"  # on a ReplicaSet and its pods
CONTROLLER_REVISION_HASH_LABEL = "controller-revision-hash"  # on StatefulSet and DaemonSet pods
CONTROLLER_HASH_LABEL = "controller.kubernetes.io/hash"  # on a ControllerRevision
# The controller's labels on a pod template, which differ per revision and are no part of what a person wrote.
TEMPLATE_HASH_LABELS = (POD_TEMPLATE_HASH_LABEL, CONTROLLER_REVISION_HASH_LABEL)
HELM_RELEASE_ANNOTATION = "meta.helm.sh/release-name"
# Labels a Job controller stamps on the pod template of each Job it creates; they differ per Job.
JOB_GENERATED_LABELS = frozenset(
    {"controller-uid", "job-name", "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name"}
)

# AMOS's own keys on the records it keeps in the state namespace (the orchestrator's and the outbox's).
AMOS_MANAGER = "amos"  # the value of MANAGED_BY_LABEL on every record AMOS writes
RECORD_LABEL = "amos.io/record"  # which kind of record: ledger, snapshot, outbox, ...

# --- who else manages an object -------------------------------------------------------------------------------

GITOPS_KEY_PREFIXES = {
    "argocd.argoproj.io/": "Argo CD",
    "kustomize.toolkit.fluxcd.io/": "Flux (Kustomization)",
    "helm.toolkit.fluxcd.io/": "Flux (HelmRelease)",
}
HELM = "Helm"


def _metadata_map(obj: dict[str, Any], field: str) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get(field) or {})


def gitops_managers(obj: dict[str, Any]) -> list[str]:
    """Who reconciles this object from Git or a chart, by its labels and annotations (Argo CD, Flux, Helm).

    A change AMOS makes in the cluster to such an object is reverted at the next sync, so the
    guard rails only propose and the read tools tell the model so.
    """
    labels, annotations = _metadata_map(obj, "labels"), _metadata_map(obj, "annotations")
    keys = labels.keys() | annotations.keys()
    found = [manager for prefix, manager in GITOPS_KEY_PREFIXES.items() if any(k.startswith(prefix) for k in keys)]
    if labels.get(MANAGED_BY_LABEL, "").strip().lower() == "helm" or HELM_RELEASE_ANNOTATION in annotations:
        found.append(HELM)
    return found


def declared_manager(obj: dict[str, Any]) -> str | None:
    """The `app.kubernetes.io/managed-by` label when it names something other than Helm (Terraform, an operator)."""
    manager = _metadata_map(obj, "labels").get(MANAGED_BY_LABEL, "").strip()
    return manager if manager and manager.lower() != "helm" else None


# --- pods -----------------------------------------------------------------------------------------------------


def focus_pod(pods: Sequence[dict[str, Any]], incident: Incident | None) -> str | None:
    """The pod whose status and logs explain the fault, from `list_pods` rows (oldest first).

    The newest live pod the incident names, else the newest live unhealthy one, else the newest
    live one; a terminating pod is being replaced and says nothing about the current template.
    With no pod listed at all, the newest pod the incident names (its owner may be gone).
    """
    named = [ref.name for ref in (incident.affected if incident else []) if ref.kind == "Pod"]
    live = [pod for pod in pods if not pod.get("deleting")]
    for pod in reversed(live):
        if pod.get("name") in named:
            return str(pod["name"])
    unhealthy = [
        pod
        for pod in live
        if pod.get("reason") or pod.get("restarts") or pod.get("phase") not in {"Running", "Succeeded"}
    ]
    chosen = (unhealthy or live)[-1:]
    if chosen:
        return str(chosen[0]["name"])
    return named[-1] if named and not pods else None


# --- events ---------------------------------------------------------------------------------------------------


def event_time(event: Mapping[str, Any]) -> str | None:
    """When an Event last happened, as the API wrote it (RFC 3339), or None.

    A repeating Event of the newer Events API moves only `series.lastObservedTime`; an older one
    moves `lastTimestamp`. `eventTime` is when a newer one first happened; the older fields follow.
    """
    return (
        (event.get("series") or {}).get("lastObservedTime")
        or event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or None
    )


# --- quantities -----------------------------------------------------------------------------------------------


# The API server's grammar: a signed decimal, then a binary suffix (Ki..Ei), a decimal one (n, u, m, k, M..E)
# or a decimal exponent (`1e3`). The Python client alone also takes `1K`, `NaN`, ` 1`, `1_000` and `1e3Mi`.
_QUANTITY = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?")


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity (`256Mi`, `100m`, `1.5Gi`) as a Decimal; ValueError when the API server would refuse it."""
    if not _QUANTITY.fullmatch(text):
        raise ValueError(f"{text!r} is not a Kubernetes quantity")
    return Decimal(_parse_quantity(text))  # type: ignore[no-untyped-call]
