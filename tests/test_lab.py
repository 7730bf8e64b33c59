"""The lab behaves like a cluster: faults appear from the spec within seconds, and fixes take effect."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from lab import build
from lab.cluster import LabCluster
from lab.workloads import deployment, job, pods_of, rollout_complete, wait_for, waiting_reasons
from tests.manifests import as_body

pytestmark = pytest.mark.lab


def _create(api: client.ApiClient, namespace: str, manifest: dict[str, Any]) -> None:
    if manifest["kind"] == "Job":
        client.BatchV1Api(api).create_namespaced_job(namespace, as_body(manifest))
    else:
        client.AppsV1Api(api).create_namespaced_deployment(namespace, as_body(manifest))


def _kubectl(lab: LabCluster, *args: str) -> str:
    env = {**os.environ, "KUBECONFIG": str(lab.kubeconfig)}
    result = subprocess.run(
        [str(build.bin_dir() / "kubectl"), *args], check=False, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _patch_deployment(api: client.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    client.AppsV1Api(api).patch_namespaced_deployment(name, namespace, patch)


def _first_pod_with(api: client.ApiClient, namespace: str, app: str, reasons: set[str]) -> client.V1Pod:
    return wait_for(
        lambda: next((p for p in pods_of(api, namespace, f"app={app}") if waiting_reasons(p) & reasons), None),
        what=f"{app} pod waiting with {reasons}",
    )


def _first_container(pod: client.V1Pod) -> client.V1ContainerStatus:
    """The status of the pod's first container; the pod must have one."""
    assert pod.status is not None and pod.status.container_statuses
    return pod.status.container_statuses[0]


def _waiting_message(pod: client.V1Pod) -> str:
    """Why the pod's first container is waiting; it must be waiting with a message."""
    state = _first_container(pod).state
    assert state is not None and state.waiting is not None and state.waiting.message is not None
    return state.waiting.message


def test_kubectl_works_and_nodes_are_ready(lab: LabCluster) -> None:
    nodes = _kubectl(lab, "get", "nodes", "--no-headers").splitlines()
    assert len(nodes) == 3 and all(" Ready " in line for line in nodes)


def test_good_image_becomes_ready(api_client: client.ApiClient, namespace: str) -> None:
    _create(api_client, namespace, deployment("web", "nginx:1.27", replicas=3))
    wait_for(lambda: rollout_complete(api_client, namespace, "web"), what="3 ready replicas")


def test_bad_image_rollout_pulls_fail_and_rollout_undo_recovers(
    lab: LabCluster, api_client: client.ApiClient, namespace: str
) -> None:
    _create(api_client, namespace, deployment("web", "nginx:1.27", replicas=2))
    wait_for(lambda: rollout_complete(api_client, namespace, "web"), what="first rollout")
    _kubectl(lab, "-n", namespace, "set", "image", "deployment/web", "app=nginx:1.99-does-not-exist")
    _first_pod_with(api_client, namespace, "web", {"ErrImagePull", "ImagePullBackOff"})
    pod = _first_pod_with(api_client, namespace, "web", {"ImagePullBackOff"})
    assert pod.metadata is not None
    events = (
        client.CoreV1Api(api_client)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod.metadata.name}")
        .items
    )
    assert any(e.reason == "Failed" and "not found" in (e.message or "") for e in events)

    _kubectl(lab, "-n", namespace, "rollout", "undo", "deployment/web")
    wait_for(lambda: rollout_complete(api_client, namespace, "web"), what="rollback to all pods Ready")
    current = [
        p for p in pods_of(api_client, namespace, "app=web") if p.metadata and p.metadata.deletion_timestamp is None
    ]
    images = set()
    for p in current:
        assert p.spec is not None
        images.add(p.spec.containers[0].image)
    assert images == {"nginx:1.27"}


@pytest.mark.parametrize(
    ("options", "log_text"),
    [
        ({"image": "shop/api:2.0-crash"}, "Traceback (most recent call last)"),
        ({"image": "shop/api:2.0", "args": ["--bad-flag"]}, "unknown flag"),
        (
            {"image": "shop/api:2.0", "env": {"DATABASE_URL": "postgres://db.shop.invalid:5432/shop"}},
            "connection refused",
        ),
    ],
    ids=["crashing-image", "bad-args", "bad-env"],
)
def test_crash_loop_with_previous_logs(
    api_client: client.ApiClient, namespace: str, options: dict[str, Any], log_text: str
) -> None:
    _create(api_client, namespace, deployment("api", **options))
    pod = _first_pod_with(api_client, namespace, "api", {"CrashLoopBackOff"})
    status = _first_container(pod)
    assert status.last_state is not None and status.last_state.terminated is not None
    assert status.last_state.terminated.exit_code != 0
    assert status.restart_count >= 1
    assert pod.metadata is not None and pod.metadata.name is not None
    logs = client.CoreV1Api(api_client).read_namespaced_pod_log(pod.metadata.name, namespace, previous=True)
    assert log_text in logs


def test_oom_killed_then_raised_limit_recovers(api_client: client.ApiClient, namespace: str) -> None:
    _create(
        api_client, namespace, deployment("cache", "shop/cache:2.1", env={"LAB_MEMORY_MI": "300"}, memory_limit="128Mi")
    )

    def oom_killed() -> bool:
        for pod in pods_of(api_client, namespace, "app=cache"):
            assert pod.status is not None
            for status in pod.status.container_statuses or []:
                last = status.last_state.terminated if status.last_state else None
                if last and last.reason == "OOMKilled" and last.exit_code == 137:
                    return True
        return False

    wait_for(oom_killed, what="OOMKilled with exit code 137")
    _patch_deployment(
        api_client,
        namespace,
        "cache",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "resources": {"limits": {"memory": "512Mi"}, "requests": {"memory": "512Mi"}},
                            }
                        ]
                    }
                }
            }
        },
    )
    wait_for(lambda: rollout_complete(api_client, namespace, "cache"), what="Ready after the limit was raised")


def test_missing_configmap_then_created_recovers(api_client: client.ApiClient, namespace: str) -> None:
    _create(api_client, namespace, deployment("api", "shop/api:2.0", env_from_configmap="api-config"))
    pod = _first_pod_with(api_client, namespace, "api", {"CreateContainerConfigError"})
    assert 'configmap "api-config" not found' in _waiting_message(pod)
    client.CoreV1Api(api_client).create_namespaced_config_map(
        namespace, as_body({"metadata": {"name": "api-config"}, "data": {"MODE": "prod"}})
    )
    wait_for(lambda: rollout_complete(api_client, namespace, "api"), what="Ready once the ConfigMap exists")


def test_missing_secret_key_is_a_config_error(api_client: client.ApiClient, namespace: str) -> None:
    manifest = deployment("api", "shop/api:2.0")
    manifest["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
    ]
    _create(api_client, namespace, manifest)
    pod = _first_pod_with(api_client, namespace, "api", {"CreateContainerConfigError"})
    assert 'secret "db" not found' in _waiting_message(pod)


def test_unschedulable_then_smaller_request_schedules(api_client: client.ApiClient, namespace: str) -> None:
    manifest = deployment("big", "nginx:1.27")
    manifest["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "500"}}
    _create(api_client, namespace, manifest)

    def unschedulable() -> bool:
        for pod in pods_of(api_client, namespace, "app=big"):
            assert pod.status is not None
            for condition in pod.status.conditions or []:
                if condition.type == "PodScheduled" and condition.reason == "Unschedulable":
                    return "Insufficient cpu" in (condition.message or "")
        return False

    wait_for(unschedulable, what="PodScheduled=False Unschedulable")
    _patch_deployment(
        api_client,
        namespace,
        "big",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "100m"}}}]}}}},
    )
    wait_for(lambda: rollout_complete(api_client, namespace, "big"), what="Ready after the request was lowered")


def test_failing_job_ends_failed_with_backoff_limit_exceeded(api_client: client.ApiClient, namespace: str) -> None:
    _create(api_client, namespace, job("report", env={"LAB_EXIT_CODE": "3"}, backoff_limit=1))

    def failed_reason() -> str | None:
        status = client.BatchV1Api(api_client).read_namespaced_job("report", namespace).status
        assert status is not None
        return next((c.reason for c in status.conditions or [] if c.type == "Failed" and c.status == "True"), None)

    assert wait_for(failed_reason, timeout=60, what="Job Failed") == "BackoffLimitExceeded"


def test_good_job_succeeds(api_client: client.ApiClient, namespace: str) -> None:
    _create(api_client, namespace, job("report"))

    def succeeded() -> int | None:
        status = client.BatchV1Api(api_client).read_namespaced_job("report", namespace).status
        assert status is not None
        return status.succeeded

    wait_for(
        succeeded,
        timeout=60,
        what="Job succeeded",
    )


def test_progress_deadline_exceeded(api_client: client.ApiClient, namespace: str) -> None:
    manifest = deployment("web", "nginx:missing")
    manifest["spec"]["progressDeadlineSeconds"] = 5
    _create(api_client, namespace, manifest)

    def progressing_reason() -> str | None:
        status = client.AppsV1Api(api_client).read_namespaced_deployment("web", namespace).status
        assert status is not None
        reason = next((c.reason for c in status.conditions or [] if c.type == "Progressing"), None)
        return reason if reason == "ProgressDeadlineExceeded" else None

    wait_for(progressing_reason, timeout=40, what="ProgressDeadlineExceeded")


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    cluster = LabCluster(tmp_path / "second", nodes=1)
    cluster.start()
    pids = [process.pid for process in cluster.processes.values()]
    cluster.stop()
    alive = [
        pid
        for pid in pids
        if os.path.exists(f"/proc/{pid}") and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    ]
    assert alive == []
