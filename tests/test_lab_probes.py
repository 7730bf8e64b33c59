"""Probes on the lab's real API server: a probe succeeds only on a declared port and a health path
(`lab.programs.HEALTH_PATHS`); a failing liveness probe restarts the container, a failing readiness
probe keeps it Running but not Ready, and fixing the probe heals the workload."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client

from lab.workloads import deployment, pods_of, rollout_complete, wait_for
from tests.manifests import as_body

pytestmark = pytest.mark.lab

PORTS = [{"containerPort": 8080, "name": "http"}]


def _probed(name: str, **probes: dict[str, Any]) -> dict[str, Any]:
    manifest = deployment(name, "shop/api:2.0")
    manifest["spec"]["template"]["spec"]["containers"][0].update(ports=PORTS, **probes)
    return manifest


def _create(api: client.ApiClient, namespace: str, manifest: dict[str, Any]) -> None:
    client.AppsV1Api(api).create_namespaced_deployment(namespace, as_body(manifest))


def _container(pod: client.V1Pod) -> client.V1ContainerStatus:
    """The pod's one container's status; the pod must have one."""
    assert pod.status is not None and pod.status.container_statuses
    return pod.status.container_statuses[0]


def _restart_count(pod: client.V1Pod) -> int:
    """Restarts of the pod's one container, 0 before it has a status."""
    assert pod.status is not None
    statuses = pod.status.container_statuses or []
    return statuses[0].restart_count if statuses else 0


def _events(api: client.ApiClient, namespace: str, pod: client.V1Pod) -> list[client.CoreV1Event]:
    assert pod.metadata is not None
    return list(
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod.metadata.name}")
        .items
    )


def _set_probe(api: client.ApiClient, namespace: str, name: str, field: str, probe: dict[str, Any]) -> None:
    client.AppsV1Api(api).patch_namespaced_deployment(
        name, namespace, {"spec": {"template": {"spec": {"containers": [{"name": "app", field: probe}]}}}}
    )


def test_probes_on_a_named_port_and_health_paths_pass(api_client: client.ApiClient, namespace: str) -> None:
    _create(
        api_client,
        namespace,
        _probed(
            "web",
            startupProbe={"tcpSocket": {"port": "http"}},
            livenessProbe={"httpGet": {"path": "/livez", "port": 8080}},
            readinessProbe={"httpGet": {"path": "/readyz", "port": "http"}, "initialDelaySeconds": 10},
        ),
    )
    wait_for(lambda: rollout_complete(api_client, namespace, "web"), what="Ready with passing probes")
    pod = pods_of(api_client, namespace, "app=web")[0]
    status = _container(pod)
    assert status.ready and status.started and status.restart_count == 0
    assert pod.status is not None and pod.status.conditions is not None
    ready = next(c for c in pod.status.conditions if c.type == "Ready")
    assert status.state is not None and status.state.running is not None
    started = status.state.running.started_at
    assert ready.last_transition_time is not None and started is not None
    assert ready.last_transition_time - started >= timedelta(seconds=1), "initialDelaySeconds 10 is 2 s on the lab"
    assert not any(e.reason == "Unhealthy" for e in _events(api_client, namespace, pod))


def test_failing_liveness_probe_restarts_the_container_until_the_probe_is_fixed(
    api_client: client.ApiClient, namespace: str
) -> None:
    _create(
        api_client,
        namespace,
        _probed("web", livenessProbe={"httpGet": {"path": "/healthz", "port": 8081}, "periodSeconds": 5}),
    )

    def restarted_twice() -> client.V1Pod | None:
        pods = pods_of(api_client, namespace, "app=web")
        return next(
            (p for p in pods if _restart_count(p) >= 2),
            None,
        )

    pod = wait_for(restarted_twice, timeout=60, what="two liveness restarts")
    last_state = _container(pod).last_state
    assert last_state is not None and last_state.terminated is not None
    last = last_state.terminated
    assert (last.reason, last.exit_code) == ("Error", 137)
    events = _events(api_client, namespace, pod)
    unhealthy = [e for e in events if e.reason == "Unhealthy"]
    assert unhealthy and all(e.type == "Warning" for e in unhealthy)
    assert pod.status is not None
    ip = pod.status.pod_ip
    assert {e.message for e in unhealthy} == {
        f'Liveness probe failed: Get "http://{ip}:8081/healthz": dial tcp {ip}:8081: connect: connection refused'
    }
    assert any(
        e.reason == "Killing" and e.message == "Container app failed liveness probe, will be restarted" for e in events
    )
    assert any(e.reason == "BackOff" for e in events)

    _set_probe(
        api_client,
        namespace,
        "web",
        "livenessProbe",
        {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
    )
    wait_for(lambda: rollout_complete(api_client, namespace, "web"), timeout=60, what="Ready with a fixed probe")
    current = [
        p for p in pods_of(api_client, namespace, "app=web") if p.metadata and p.metadata.deletion_timestamp is None
    ]
    assert [_container(p).restart_count for p in current] == [0]


def test_failing_readiness_probe_keeps_the_pod_running_but_not_ready(
    api_client: client.ApiClient, namespace: str
) -> None:
    manifest = _probed("web", readinessProbe={"httpGet": {"path": "/status", "port": "http"}})
    manifest["spec"]["progressDeadlineSeconds"] = 600
    _create(api_client, namespace, manifest)

    def unhealthy_event() -> client.V1Pod | None:
        pods = pods_of(api_client, namespace, "app=web")
        return next((p for p in pods if any(e.reason == "Unhealthy" for e in _events(api_client, namespace, p))), None)

    pod = wait_for(unhealthy_event, what="a readiness Unhealthy event")
    assert pod.metadata is not None and pod.metadata.name is not None
    pod = client.CoreV1Api(api_client).read_namespaced_pod(pod.metadata.name, namespace)
    status = _container(pod)
    assert pod.status is not None and status.state is not None
    assert pod.status.phase == "Running" and status.state.running and status.started and not status.ready
    assert status.restart_count == 0
    assert pod.status.conditions is not None
    conditions = {c.type: c for c in pod.status.conditions}
    for kind in ("Ready", "ContainersReady"):
        assert (conditions[kind].status, conditions[kind].reason) == ("False", "ContainersNotReady")
    messages = {e.message for e in _events(api_client, namespace, pod) if e.reason == "Unhealthy"}
    assert messages == {"Readiness probe failed: HTTP probe failed with statuscode: 404"}

    _set_probe(api_client, namespace, "web", "readinessProbe", {"httpGet": {"path": "/ready", "port": "http"}})
    wait_for(lambda: rollout_complete(api_client, namespace, "web"), timeout=60, what="Ready with a fixed probe")
