"""The lab's scale mode: `quiet_starts` drops only the Normal Events of healthy first starts; faults keep theirs."""

from __future__ import annotations

from pathlib import Path

import pytest
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


def test_quiet_starts_skip_healthy_start_events_but_not_a_crash_loop(tmp_path: Path) -> None:
    cluster = LabCluster(tmp_path / "quiet", nodes=1, quiet_starts=True)
    cluster.start()
    try:
        with cluster.api_client() as api:
            namespace = create_namespace(api, "quiet")
            apps = client.AppsV1Api(api)
            apps.create_namespaced_deployment(namespace, as_body(deployment("web", "nginx:1.27")))
            apps.create_namespaced_deployment(namespace, as_body(deployment("api", "shop/api:2.0-crash")))
            wait_for(lambda: rollout_complete(api, namespace, "web"), what="web Ready")
            crashing = wait_for(
                lambda: next(
                    (p for p in pods_of(api, namespace, "app=api") if "CrashLoopBackOff" in waiting_reasons(p)), None
                ),
                what="api crash-looping",
            )
            assert _event_reasons(api, namespace, pods_of(api, namespace, "app=web")[0]) == set()
            assert {"Created", "Started", "BackOff"} <= _event_reasons(api, namespace, crashing)
    finally:
        cluster.stop()
