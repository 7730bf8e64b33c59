"""Init containers on the lab's real API server: they run in order before the app, fail like app containers, and
the pod heals when the spec is fixed. Statuses are read the way `kubectl get pods` prints them."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from lab.cluster import LabCluster
from lab.workloads import container, deployment, job, pods_of, rollout_complete, wait_for
from tests.manifests import as_body
from tests.test_lab import _kubectl

pytestmark = pytest.mark.lab


def _with_init(manifest: dict[str, Any], *init_containers: dict[str, Any]) -> dict[str, Any]:
    manifest["spec"]["template"]["spec"]["initContainers"] = list(init_containers)
    return manifest


def _kubectl_status(lab: LabCluster, namespace: str, pod: str) -> str:
    """The STATUS column of `kubectl get pod`, which kubectl derives from initContainerStatuses."""
    return _kubectl(lab, "-n", namespace, "get", "pod", pod, "--no-headers").split()[2]


def _status(pod: client.V1Pod) -> client.V1PodStatus:
    assert pod.status is not None
    return pod.status


def _name(pod: client.V1Pod) -> str:
    assert pod.metadata is not None and pod.metadata.name is not None
    return pod.metadata.name


def _app(pod: client.V1Pod) -> client.V1ContainerStatus:
    """The status of the pod's app container (its first); the pod must have one."""
    statuses = _status(pod).container_statuses
    assert statuses
    return statuses[0]


def _state(status: client.V1ContainerStatus) -> client.V1ContainerState:
    assert status.state is not None
    return status.state


def _waiting_reason(status: client.V1ContainerStatus) -> str | None:
    waiting = _state(status).waiting
    assert waiting is not None
    return waiting.reason


def _terminated(status: client.V1ContainerStatus) -> client.V1ContainerStateTerminated:
    terminated = _state(status).terminated
    assert terminated is not None
    return terminated


def _init_status(pod: client.V1Pod, name: str) -> client.V1ContainerStatus:
    return next(s for s in _status(pod).init_container_statuses or [] if s.name == name)


def _condition(pod: client.V1Pod, kind: str) -> client.V1PodCondition:
    return next(c for c in _status(pod).conditions or [] if c.type == kind)


def test_init_containers_run_in_order_while_the_app_waits_then_the_pod_is_ready(
    api_client: client.ApiClient, namespace: str
) -> None:
    manifest = _with_init(
        deployment("api", "shop/api:2.0"),
        container("shop/migrate:1.0", name="migrate", env={"LAB_RUN_SECONDS": "3"}),
        container("shop/warm:1.0", name="warm"),
    )
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, as_body(manifest))

    def initializing() -> client.V1Pod | None:
        pods = [p for p in pods_of(api_client, namespace, "app=api") if _status(p).init_container_statuses]
        return next((p for p in pods if _state(_init_status(p, "migrate")).running), None)

    pod = wait_for(initializing, what="the first init container running")
    app = _app(pod)
    assert _waiting_reason(app) == "PodInitializing" and not app.ready
    assert _waiting_reason(_init_status(pod, "warm")) == "PodInitializing"
    initialized = _condition(pod, "Initialized")
    assert initialized.status == "False" and initialized.reason == "ContainersNotInitialized"
    assert initialized.message == "containers with incomplete status: [migrate warm]"
    assert _status(pod).phase == "Pending"

    wait_for(lambda: rollout_complete(api_client, namespace, "api"), what="Ready after both init containers")
    pod = pods_of(api_client, namespace, "app=api")[0]
    migrate, warm = _init_status(pod, "migrate"), _init_status(pod, "warm")
    for status in (migrate, warm):
        assert (_terminated(status).reason, _terminated(status).exit_code, status.ready) == (
            "Completed",
            0,
            True,
        )
    finished, started = _terminated(migrate).finished_at, _terminated(warm).started_at
    assert finished is not None and started is not None
    assert finished <= started
    assert _condition(pod, "Initialized").status == "True"
    events = (
        client.CoreV1Api(api_client)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={_name(pod)},reason=Started")
        .items
    )
    assert {e.involved_object.field_path for e in events} == {
        "spec.initContainers{migrate}",
        "spec.initContainers{warm}",
        "spec.containers{app}",
    }


@pytest.mark.parametrize(
    ("options", "kubectl_status", "log_text"),
    [
        ({"image": "shop/migrate:1.0-missing"}, "Init:ImagePullBackOff", None),
        ({"image": "shop/migrate:1.0-crash"}, "Init:CrashLoopBackOff", "Traceback (most recent call last)"),
        ({"image": "shop/migrate:1.0", "args": ["--bad-flag"]}, "Init:CrashLoopBackOff", "unknown flag"),
        (
            {"image": "shop/migrate:1.0", "env": {"LAB_EXIT_CODE": "3"}},
            "Init:CrashLoopBackOff",
            "exiting with status 3",
        ),
    ],
    ids=["missing-image", "crashing-image", "bad-args", "exit-code"],
)
def test_a_failing_init_container_blocks_the_app_and_a_fixed_spec_heals(
    lab: LabCluster,
    api_client: client.ApiClient,
    namespace: str,
    options: dict[str, Any],
    kubectl_status: str,
    log_text: str | None,
) -> None:
    image = options.pop("image")
    manifest = _with_init(deployment("api", "shop/api:2.0"), container(image, name="migrate", **options))
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, as_body(manifest))

    def shown_as_wanted() -> client.V1Pod | None:
        pods = pods_of(api_client, namespace, "app=api")
        return next((p for p in pods if _kubectl_status(lab, namespace, _name(p)) == kubectl_status), None)

    shown = wait_for(shown_as_wanted, what=f"kubectl showing {kubectl_status}")
    pod = client.CoreV1Api(api_client).read_namespaced_pod(_name(shown), namespace)  # as kubectl saw it
    assert _status(pod).phase == "Pending"
    assert _waiting_reason(_app(pod)) == "PodInitializing"
    assert _condition(pod, "Initialized").status == "False"
    migrate = _init_status(pod, "migrate")
    core = client.CoreV1Api(api_client)
    if log_text is None:
        events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={_name(pod)}").items
        assert any(
            e.reason == "Failed"
            and e.involved_object.field_path == "spec.initContainers{migrate}"
            and "not found" in (e.message or "")
            for e in events
        )
    else:
        assert migrate.last_state is not None and migrate.last_state.terminated is not None
        assert migrate.restart_count >= 1 and migrate.last_state.terminated.exit_code != 0
        assert log_text in core.read_namespaced_pod_log(_name(pod), namespace, container="migrate", previous=True)

    _kubectl(
        lab,
        "-n",
        namespace,
        "patch",
        "deployment",
        "api",
        "--type=json",
        "-p",
        '[{"op": "replace", "path": "/spec/template/spec/initContainers/0",'
        ' "value": {"name": "migrate", "image": "shop/migrate:1.0"}}]',
    )
    wait_for(lambda: rollout_complete(api_client, namespace, "api"), timeout=60, what="Ready after the fix")


def test_a_job_whose_init_container_exits_non_zero_fails_with_init_error(
    lab: LabCluster, api_client: client.ApiClient, namespace: str
) -> None:
    manifest = job("report", backoff_limit=0)
    manifest["spec"]["template"]["spec"]["initContainers"] = [
        container("shop/fetch:1.0", name="fetch", env={"LAB_EXIT_CODE": "2"})
    ]
    client.BatchV1Api(api_client).create_namespaced_job(namespace, as_body(manifest))

    def failed_pod() -> client.V1Pod | None:
        return next(
            (p for p in pods_of(api_client, namespace, "job-name=report") if _status(p).phase == "Failed"), None
        )

    pod = wait_for(failed_pod, what="the Job's pod Failed")
    fetch = _init_status(pod, "fetch")
    assert (_terminated(fetch).reason, _terminated(fetch).exit_code, fetch.restart_count) == ("Error", 2, 0)
    assert _waiting_reason(_app(pod)) == "PodInitializing"
    assert _kubectl_status(lab, namespace, _name(pod)) == "Init:Error"


def test_a_sidecar_keeps_running_beside_the_app_and_counts_for_readiness(
    lab: LabCluster, api_client: client.ApiClient, namespace: str
) -> None:
    sidecar = container("shop/proxy:1.0", name="proxy")
    sidecar["restartPolicy"] = "Always"
    manifest = _with_init(deployment("api", "shop/api:2.0"), sidecar)
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, as_body(manifest))
    wait_for(lambda: rollout_complete(api_client, namespace, "api"), what="Ready with its sidecar")
    pod = pods_of(api_client, namespace, "app=api")[0]
    proxy = _init_status(pod, "proxy")
    assert _state(proxy).running and proxy.ready and proxy.started
    assert _kubectl(lab, "-n", namespace, "get", "pod", _name(pod), "--no-headers").split()[1] == "2/2"
