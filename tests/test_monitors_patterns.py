"""Failure patterns, views and owner resolution, from API-shaped dicts and an explicit `now`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.config import Settings
from core.models import FaultKind, ObjectRef
from monitors.owners import OwnerIndex
from monitors.patterns import (
    deployment_faults,
    deployment_recheck_at,
    job_faults,
    pod_faults,
    pod_recheck_at,
)
from monitors.trim import DeploymentView, JobView, PodView, ReplicaSetView

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings(pending_grace_seconds=60, unavailable_grace_seconds=120)
WORKLOAD = ObjectRef(kind="Deployment", namespace="shop", name="web")
IGNORE = ("amos.io/ignore",)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def at(seconds_ago: float) -> datetime:
    return NOW - timedelta(seconds=seconds_ago)


# ---- API-shaped builders (camelCase, as `sanitize_for_serialization` or a raw watch event gives) ----
def managed_fields() -> list[dict[str, Any]]:
    return [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": ts(300),
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {f"f:label-{i}": {} for i in range(20)}}},
        },
        {
            "manager": "kubelet",
            "operation": "Update",
            "apiVersion": "v1",
            "subresource": "status",
            "time": ts(5),
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {"f:conditions": {f'k:{{"type":"C{i}"}}': {".": {}} for i in range(20)}}},
        },
    ]


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"waiting": {"reason": reason, "message": message}}


def terminated(reason: str, exit_code: int, finished_ago: float) -> dict[str, Any]:
    return {
        "terminated": {
            "reason": reason,
            "exitCode": exit_code,
            "startedAt": ts(finished_ago + 1),
            "finishedAt": ts(finished_ago),
            "containerID": "containerd://0123456789abcdef",
        }
    }


def running(started_ago: float = 1) -> dict[str, Any]:
    return {"running": {"startedAt": ts(started_ago)}}


def container_status(
    name: str = "app",
    state: dict[str, Any] | None = None,
    last_state: dict[str, Any] | None = None,
    restarts: int = 0,
    ready: bool = False,
) -> dict[str, Any]:
    return {
        "name": name,
        "image": f"registry.example.com/shop/{name}:1.4.2",
        "imageID": "registry.example.com/shop/app@sha256:" + "ab" * 32,
        "ready": ready,
        "started": "running" in (state or {}),
        "restartCount": restarts,
        "state": state or running(),
        "lastState": last_state or {},
    }


def pod(
    statuses: list[dict[str, Any]] | None = None,
    *,
    name: str = "web-6b7f9c5d4-x2x7q",
    phase: str = "Running",
    scheduled: dict[str, Any] | None = None,
    owner: tuple[str, str] | None = ("ReplicaSet", "web-6b7f9c5d4"),
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
    init_statuses: list[dict[str, Any]] | None = None,
    containers_ready_since: float = 30,
) -> dict[str, Any]:
    statuses = statuses if statuses is not None else [container_status(ready=True)]
    all_ready = all(s["ready"] for s in statuses) and bool(statuses)
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "shop",
        "uid": "5f0c1c9e-7d5e-4a36-9f0e-2b8a8f0d9a11",
        "resourceVersion": "48213",
        "creationTimestamp": ts(600),
        "labels": {"app": "web", "pod-template-hash": "6b7f9c5d4", "tier": "frontend"},
        "annotations": {
            "kubectl.kubernetes.io/restartedAt": ts(900),
            "prometheus.io/scrape": "true",
            **(annotations or {}),
        },
        "managedFields": managed_fields(),
    }
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1" if owner[0] != "Job" else "batch/v1",
                "kind": owner[0],
                "name": owner[1],
                "uid": "0b3d2f3e-5a7c-4d41-8f7b-1e2d3c4b5a69",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    if deleting:
        meta["deletionTimestamp"] = ts(1)
        meta["deletionGracePeriodSeconds"] = 30
    conditions = [
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": ts(590)},
        {"type": "Initialized", "status": "True", "lastTransitionTime": ts(590)},
        {"type": "Ready", "status": str(all_ready), "lastTransitionTime": ts(containers_ready_since)},
        {
            "type": "ContainersReady",
            "status": str(all_ready),
            "lastTransitionTime": ts(containers_ready_since),
            **(
                {}
                if all_ready
                else {"reason": "ContainersNotReady", "message": "containers with unready status: [app]"}
            ),
        },
        scheduled or {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts(595)},
    ]
    status: dict[str, Any] = {"phase": phase, "conditions": conditions, "qosClass": "Burstable"}
    if phase != "Pending" or statuses:
        status |= {"hostIP": "10.0.3.17", "podIP": "10.244.1.23", "startTime": ts(590), "containerStatuses": statuses}
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "nodeName": None if phase == "Pending" and not statuses else "node-3",
            "restartPolicy": "Always",
            "serviceAccountName": "default",
            "containers": [
                {
                    "name": s["name"],
                    "image": s["image"],
                    "args": ["--listen=:8080", "--log-level=info"],
                    "env": [{"name": f"VAR_{i}", "value": "x" * 40} for i in range(10)],
                    "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}},
                    "volumeMounts": [
                        {"name": "kube-api-access-abcde", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
                    ],
                }
                for s in statuses
            ],
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
            ],
        },
        "status": status,
    }


def faults_of(obj: dict[str, Any], now: datetime = NOW) -> list[Any]:
    return pod_faults(PodView.from_api(obj, IGNORE), WORKLOAD, now, SETTINGS)


# ---- views ------------------------------------------------------------------------------------
def test_pod_view_keeps_what_patterns_need_and_is_a_fraction_of_the_object() -> None:
    obj = pod(
        [
            container_status(
                state=waiting("CrashLoopBackOff", "back-off 20s"), last_state=terminated("Error", 1, 5), restarts=4
            )
        ],
        annotations={"amos.io/ignore": "false"},
    )
    view = PodView.from_api(obj, IGNORE)
    assert (view.namespace, view.name, view.phase, view.node_name) == (
        "shop",
        "web-6b7f9c5d4-x2x7q",
        "Running",
        "node-3",
    )
    assert view.annotations == {"amos.io/ignore": "false"}  # nothing else survives
    assert view.controller is not None and view.controller.name == "web-6b7f9c5d4"
    assert view.pod_template_hash == "6b7f9c5d4"
    assert {c.type for c in view.conditions} == {"PodScheduled", "ContainersReady"}
    (c,) = view.containers
    assert (c.waiting_reason, c.restart_count, c.ready) == ("CrashLoopBackOff", 4, False)
    assert c.last_terminated is not None and c.last_terminated.exit_code == 1
    assert c.last_terminated.finished_at == at(5)
    full, trimmed = len(json.dumps(obj)), len(view.model_dump_json())
    assert trimmed < 2048 and trimmed * 3 < full


def test_views_of_workloads() -> None:
    rs = ReplicaSetView.from_api(
        {
            "metadata": {
                "name": "web-6b7f9c5d4",
                "namespace": "shop",
                "annotations": {"deployment.kubernetes.io/revision": "7"},
                "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}],
            },
            "spec": {"replicas": 3},
            "status": {"replicas": 3},
        }
    )
    assert (rs.deployment, rs.revision) == ("web", "7")
    dep = DeploymentView.from_api(deployment(available=("False", 300)))
    assert (dep.replicas, dep.available_replicas, dep.generation, dep.observed_generation) == (3, 1, 4, 4)
    job = JobView.from_api(failed_job("BackoffLimitExceeded"))
    assert job.failed == 7 and job.condition("Failed") is not None


# ---- pod patterns -----------------------------------------------------------------------------
def test_healthy_pod_has_no_fault() -> None:
    assert faults_of(pod()) == []


def test_crash_loop_with_exit_code_and_restart_count() -> None:
    message = "back-off 40s restarting failed container=app pod=web-6b7f9c5d4-x2x7q_shop(5f0c1c9e)"
    obj = pod(
        [
            container_status(
                state=waiting("CrashLoopBackOff", message), last_state=terminated("Error", 1, 12), restarts=5
            )
        ]
    )
    (fault,) = faults_of(obj)
    assert fault.kind is FaultKind.CRASH_LOOP
    assert fault.workload == WORKLOAD
    assert fault.subject == ObjectRef(kind="Pod", namespace="shop", name="web-6b7f9c5d4-x2x7q")
    e = fault.evidence
    assert (e.reason, e.message, e.container, e.exit_code, e.restart_count) == (
        "CrashLoopBackOff",
        message,
        "app",
        1,
        5,
    )
    assert e.since == at(12)
    assert fault.observed_at == NOW


def test_crash_loop_persists_while_the_restarted_container_runs_unready() -> None:
    between = pod([container_status(state=running(1), last_state=terminated("Error", 2, 3), restarts=2)])
    (fault,) = faults_of(between)
    assert fault.kind is FaultKind.CRASH_LOOP and fault.evidence.reason == "Error" and fault.evidence.exit_code == 2


def test_recovered_or_long_ago_crash_is_not_a_fault() -> None:
    recovered = pod(
        [container_status(state=running(60), last_state=terminated("Error", 1, 61), restarts=1, ready=True)]
    )
    long_ago = pod([container_status(state=running(3600), last_state=terminated("Error", 1, 3601), restarts=1)])
    clean_exit = pod([container_status(state=running(1), last_state=terminated("Completed", 0, 2), restarts=1)])
    assert faults_of(recovered) == faults_of(long_ago) == faults_of(clean_exit) == []


@pytest.mark.parametrize("reason", ["ErrImagePull", "ImagePullBackOff"])
def test_image_pull_failures_are_one_kind(reason: str) -> None:
    message = 'failed to pull and unpack image "registry.example.com/shop/app:v9.9.9-missing": not found'
    obj = pod([container_status(state=waiting(reason, message))], phase="Pending", containers_ready_since=20)
    (fault,) = faults_of(obj)
    assert fault.kind is FaultKind.IMAGE_PULL
    assert (fault.evidence.reason, fault.evidence.message, fault.evidence.container) == (reason, message, "app")
    assert fault.evidence.since == at(20)  # when the containers became unready: the pod's start here


def test_oom_takes_precedence_over_the_crash_loop_it_causes() -> None:
    obj = pod(
        [
            container_status(
                state=waiting("CrashLoopBackOff", "back-off 10s"),
                last_state=terminated("OOMKilled", 137, 4),
                restarts=3,
            )
        ]
    )
    (fault,) = faults_of(obj)
    assert fault.kind is FaultKind.OOM_KILLED
    assert (fault.evidence.reason, fault.evidence.exit_code, fault.evidence.restart_count) == ("OOMKilled", 137, 3)
    assert fault.evidence.since == at(4)


def test_oom_killed_in_the_current_state() -> None:
    obj = pod([container_status(state=terminated("OOMKilled", 137, 8))], phase="Failed", owner=("Job", "nightly"))
    (fault,) = faults_of(obj)
    assert fault.kind is FaultKind.OOM_KILLED and fault.evidence.exit_code == 137 and fault.evidence.since == at(8)


def test_oom_between_restarts_is_still_oom() -> None:
    obj = pod([container_status(state=running(1), last_state=terminated("OOMKilled", 137, 2), restarts=6)])
    (fault,) = faults_of(obj)
    assert fault.kind is FaultKind.OOM_KILLED


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("CreateContainerConfigError", 'configmap "web-config" not found'),
        ("CreateContainerError", "container name conflict"),
    ],
)
def test_create_container_errors(reason: str, message: str) -> None:
    obj = pod([container_status(state=waiting(reason, message))], phase="Pending")
    (fault,) = faults_of(obj)
    assert fault.kind is FaultKind.CONTAINER_CONFIG
    assert (fault.evidence.reason, fault.evidence.message) == (reason, message)


def test_every_faulty_container_counts_and_init_containers_too() -> None:
    obj = pod(
        [
            container_status("app", state=waiting("ImagePullBackOff")),
            container_status("sidecar", state=waiting("CrashLoopBackOff"), last_state=terminated("Error", 3, 2)),
        ],
        init_statuses=[
            container_status(
                "migrate", state=waiting("CrashLoopBackOff"), last_state=terminated("Error", 1, 2), restarts=2
            )
        ],
    )
    found = {(f.evidence.container, f.kind) for f in faults_of(obj)}
    assert found == {
        ("migrate", FaultKind.CRASH_LOOP),
        ("app", FaultKind.IMAGE_PULL),
        ("sidecar", FaultKind.CRASH_LOOP),
    }


def test_terminating_pod_has_no_fault() -> None:
    obj = pod(
        [container_status(state=waiting("CrashLoopBackOff"), last_state=terminated("Error", 1, 2))], deleting=True
    )
    assert faults_of(obj) == []


def unschedulable(seconds_ago: float) -> dict[str, Any]:
    return pod(
        [],
        phase="Pending",
        scheduled={
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: "
            "3 No preemption victims found for incoming pod.",
            "lastTransitionTime": ts(seconds_ago),
        },
    )


def test_unschedulable_only_after_the_grace_period() -> None:
    assert faults_of(unschedulable(30)) == []
    (fault,) = faults_of(unschedulable(61))
    assert fault.kind is FaultKind.UNSCHEDULABLE
    assert fault.evidence.reason == "Unschedulable" and "Insufficient memory" in fault.evidence.message
    assert fault.evidence.since == at(61)


def test_unschedulable_pod_says_when_to_look_again() -> None:
    assert pod_recheck_at(PodView.from_api(unschedulable(30)), SETTINGS) == at(30) + timedelta(seconds=60)
    assert pod_recheck_at(PodView.from_api(pod()), SETTINGS) is None


# ---- Deployments and Jobs ----------------------------------------------------------------------
def deployment(
    *,
    progressing: tuple[str, str] = ("True", "NewReplicaSetAvailable"),
    available: tuple[str, float] = ("True", 900),
    generation: int = 4,
    observed: int = 4,
    replicas: int = 3,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "generation": generation,
            "managedFields": managed_fields(),
            "annotations": {"deployment.kubernetes.io/revision": "7"},
        },
        "spec": {"replicas": replicas, "progressDeadlineSeconds": 600, "template": {"spec": {"containers": []}}},
        "status": {
            "observedGeneration": observed,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": 1,
            "availableReplicas": 1,
            "unavailableReplicas": replicas - 1,
            "conditions": [
                {
                    "type": "Available",
                    "status": available[0],
                    "reason": "MinimumReplicasAvailable" if available[0] == "True" else "MinimumReplicasUnavailable",
                    "message": "Deployment does not have minimum availability."
                    if available[0] == "False"
                    else "Deployment has minimum availability.",
                    "lastUpdateTime": ts(available[1]),
                    "lastTransitionTime": ts(available[1]),
                },
                {
                    "type": "Progressing",
                    "status": progressing[0],
                    "reason": progressing[1],
                    "message": 'ReplicaSet "web-6b7f9c5d4" has timed out progressing.',
                    "lastUpdateTime": ts(30),
                    "lastTransitionTime": ts(30),
                },
            ],
        },
    }


def dep_faults(obj: dict[str, Any]) -> list[Any]:
    return deployment_faults(DeploymentView.from_api(obj), NOW, SETTINGS)


def test_healthy_deployment_has_no_fault() -> None:
    assert dep_faults(deployment()) == []


def test_progress_deadline_exceeded_is_a_stuck_rollout() -> None:
    (fault,) = dep_faults(deployment(progressing=("False", "ProgressDeadlineExceeded")))
    ref = ObjectRef(kind="Deployment", namespace="shop", name="web")
    assert fault.kind is FaultKind.ROLLOUT_STUCK and fault.workload == ref and fault.subject == ref
    assert fault.evidence.reason == "ProgressDeadlineExceeded" and "timed out" in fault.evidence.message
    assert fault.evidence.since == at(30)


def test_stuck_rollout_is_ignored_while_a_new_spec_is_unobserved() -> None:
    assert dep_faults(deployment(progressing=("False", "ProgressDeadlineExceeded"), generation=5, observed=4)) == []


def test_unavailable_replicas_only_after_the_grace_period() -> None:
    assert dep_faults(deployment(available=("False", 100))) == []
    (fault,) = dep_faults(deployment(available=("False", 121)))
    assert fault.kind is FaultKind.REPLICAS_UNAVAILABLE
    assert fault.evidence.reason == "MinimumReplicasUnavailable" and "1/3 available" in fault.evidence.message
    assert deployment_recheck_at(DeploymentView.from_api(deployment(available=("False", 100))), SETTINGS) == at(-20)
    assert deployment_recheck_at(DeploymentView.from_api(deployment()), SETTINGS) is None


def failed_job(reason: str) -> dict[str, Any]:
    messages = {
        "BackoffLimitExceeded": "Job has reached the specified backoff limit",
        "DeadlineExceeded": "Job was active longer than specified deadline",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "nightly-report", "namespace": "batch", "managedFields": managed_fields()},
        "spec": {"backoffLimit": 6, "template": {"spec": {"containers": []}}},
        "status": {
            "failed": 7,
            "startTime": ts(400),
            "conditions": [
                {
                    "type": "FailureTarget",
                    "status": "True",
                    "reason": reason,
                    "message": messages[reason],
                    "lastProbeTime": ts(11),
                    "lastTransitionTime": ts(11),
                },
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": messages[reason],
                    "lastProbeTime": ts(10),
                    "lastTransitionTime": ts(10),
                },
            ],
        },
    }


@pytest.mark.parametrize("reason", ["BackoffLimitExceeded", "DeadlineExceeded"])
def test_failed_job(reason: str) -> None:
    (fault,) = job_faults(JobView.from_api(failed_job(reason)), NOW)
    assert fault.kind is FaultKind.JOB_FAILED
    assert fault.workload == ObjectRef(kind="Job", namespace="batch", name="nightly-report")
    assert fault.evidence.reason == reason and "7 failed pod(s)" in fault.evidence.message
    assert fault.evidence.since == at(10)


def test_running_job_has_no_fault() -> None:
    job = {"metadata": {"name": "nightly-report", "namespace": "batch"}, "status": {"active": 1, "failed": 2}}
    assert job_faults(JobView.from_api(job), NOW) == []


# ---- owners ------------------------------------------------------------------------------------
def test_pod_resolves_through_its_replica_set_to_the_deployment() -> None:
    index = OwnerIndex()
    index.observe(
        ReplicaSetView.from_api(
            {
                "metadata": {
                    "name": "web-6b7f9c5d4",
                    "namespace": "shop",
                    "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}],
                }
            }
        )
    )
    view = PodView.from_api(pod())
    assert index.workload_of(view) == WORKLOAD
    index.forget("shop", "web-6b7f9c5d4")
    assert len(index) == 0
    assert index.workload_of(view) == WORKLOAD  # not indexed (yet): the controller's naming rule still tells


def test_owner_kinds() -> None:
    index = OwnerIndex()
    index.observe(ReplicaSetView.from_api({"metadata": {"name": "web-6b7f9c5d4", "namespace": "shop"}}))
    assert index.workload_of(PodView.from_api(pod())) == ObjectRef(
        kind="ReplicaSet", namespace="shop", name="web-6b7f9c5d4"
    )
    job_pod = PodView.from_api(pod(owner=("Job", "nightly"), name="nightly-x8k2p"))
    assert index.workload_of(job_pod) == ObjectRef(kind="Job", namespace="shop", name="nightly")
    bare = PodView.from_api(pod(owner=None, name="debug"))
    assert index.workload_of(bare) == ObjectRef(kind="Pod", namespace="shop", name="debug")


def test_owner_index_replace_keeps_other_namespaces_and_drops_the_gone() -> None:
    index = OwnerIndex()
    for ns, name in (("a", "x-1"), ("a", "y-1"), ("b", "z-1")):
        index.observe(ReplicaSetView.from_api({"metadata": {"name": name, "namespace": ns}}))
    index.replace("a", [ReplicaSetView.from_api({"metadata": {"name": "x-1", "namespace": "a"}})])
    assert len(index) == 2
    index.replace(None, [])
    assert len(index) == 0
