"""The scale lab (`LabCluster(scale=True)`): cheaper for the control plane, the same for every fault.

It drops only the Normal Events of a healthy container's first start; crash loops and pull
failures keep their states and Events, and its clients authenticate with a bearer token.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client

from lab.cluster import LabCluster
from lab.workloads import create_namespace, deployment, pods_of, rollout_complete, wait_for, waiting_reasons
from tests.manifests import as_body

pytestmark = pytest.mark.lab


def _event_reasons(api: client.ApiClient, namespace: str, pod: client.V1Pod) -> set[str | None]:
    assert pod.metadata is not None
    events = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod.metadata.name}")
        .items
    )
    return {e.reason for e in events if e.source is not None and e.source.component == "kubelet"}


def _pod_waiting_in(api: client.ApiClient, namespace: str, app: str, reason: str) -> client.V1Pod:
    return wait_for(
        lambda: next((p for p in pods_of(api, namespace, f"app={app}") if reason in waiting_reasons(p)), None),
        what=f"{app} in {reason}",
    )


def test_scale_lab_runs_healthy_pods_quietly_and_faults_as_always(tmp_path: Path) -> None:
    cluster = LabCluster(tmp_path / "scale", nodes=1, scale=True)
    cluster.start()
    try:
        users = yaml.safe_load(cluster.kubeconfig.read_text())["users"]
        assert set(users[0]["user"]) == {"token"}
        with cluster.api_client() as api:
            namespace = create_namespace(api, "scale")
            apps = client.AppsV1Api(api)
            apps.create_namespaced_deployment(namespace, as_body(deployment("web", "nginx:1.27")))
            apps.create_namespaced_deployment(namespace, as_body(deployment("api", "shop/api:2.0-crash")))
            apps.create_namespaced_deployment(namespace, as_body(deployment("pull", "shop/api:v9.9.9-missing")))
            wait_for(lambda: rollout_complete(api, namespace, "web"), what="web Ready")
            crashing = _pod_waiting_in(api, namespace, "api", "CrashLoopBackOff")
            pulling = _pod_waiting_in(api, namespace, "pull", "ImagePullBackOff")
            assert _event_reasons(api, namespace, pods_of(api, namespace, "app=web")[0]) == set()
            assert {"Created", "Started", "BackOff"} <= _event_reasons(api, namespace, crashing)
            assert {"Pulling", "Failed", "BackOff"} <= _event_reasons(api, namespace, pulling)
    finally:
        cluster.stop()
