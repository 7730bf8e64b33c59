"""The Kubernetes vocabulary every layer shares: kind names, container reasons, well-known keys, who manages an object.

Written once here so that the monitors, tools, agents and orchestrator cannot disagree on, say,
which reasons mean an image cannot be pulled or which labels say Helm owns an object. Pure: it
reads API JSON (dicts) and never calls the cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity as _parse_quantity

from core.models import Incident

# --- kinds ------------------------------------------------------------------------------------------------

_KINDS = {
    "deployment": "Deployment",
    "deploy": "Deployment",
    "statefulset": "StatefulSet",
    "sts": "StatefulSet",
    "daemonset": "DaemonSet",
    "ds": "DaemonSet",
    "cronjob": "CronJob",
    "cj": "CronJob",
    "job": "Job",
    "pod": "Pod",
}

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob")  # own a pod template a fix changes
REVISIONED_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob")  # keep revisions to go back to
SCALABLE_KINDS = ("Deployment", "StatefulSet")  # `spec.replicas` says how many pods should run
ROLLOUT_KINDS = ("Deployment", "StatefulSet", "DaemonSet")  # roll pods out; report `status.observedGeneration`


def canonical_kind(value: str) -> str:
    """Models and people write `deployment`, `deployments` or `sts`; the API spells `Deployment`, `StatefulSet`."""
    text = value.strip().lower()
    return _KINDS.get(text) or _KINDS.get(text.removesuffix("s")) or _KINDS.get(text.removesuffix("es")) or value


# --- container state reasons (what the kubelet writes in `state.waiting.reason` / `terminated.reason`) ------

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
CREATE_CONTAINER_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
START_FAILURE_REASONS = frozenset({"RunContainerError", "PreCreateHookError", "PostStartHookError"})
CRASH_LOOP_REASON = "CrashLoopBackOff"
OOM_KILLED_REASON = "OOMKilled"

# --- well-known labels and annotations ----------------------------------------------------------------------

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
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


# --- quantities -----------------------------------------------------------------------------------------------


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity (`256Mi`, `100m`, `1.5Gi`) as a Decimal; raises when `text` is not one."""
    return Decimal(_parse_quantity(text))  # type: ignore[no-untyped-call]
