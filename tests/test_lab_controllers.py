"""StatefulSets, DaemonSets and CronJobs on the lab: the real controllers create their pods, the scheduler
binds them to KWOK nodes, the lab kubelet runs them like any other, and `kubectl rollout undo` behaves as
on a real cluster (including the StatefulSet "forced rollback" rule for OrderedReady)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from lab.cluster import NODE_ANNOTATION, LabCluster
from lab.workloads import container, pods_of, wait_for
from tests.manifests import as_body
from tests.test_lab import _kubectl

pytestmark = pytest.mark.lab

GOOD, BAD = "shop/db:1.0", "shop/db:1.1-missing"


def _template(name: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": name}},
        "spec": {"containers": [container(image)], "terminationGracePeriodSeconds": 0},
    }


def _stateful_set(name: str, policy: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 3,
            "serviceName": name,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": name}},
            "template": _template(name, GOOD),
        },
    }


def _rolled_out(lab: LabCluster, namespace: str, workload: str) -> bool:
    _kubectl(lab, "-n", namespace, "rollout", "status", workload, "--timeout=90s")
    return True


def _metadata(obj: client.V1Pod | client.V1Node | client.V1Job) -> client.V1ObjectMeta:
    assert obj.metadata is not None
    return obj.metadata


def _name(obj: client.V1Pod | client.V1Node) -> str:
    name = _metadata(obj).name
    assert name is not None
    return name


def _pod_spec(pod: client.V1Pod) -> client.V1PodSpec:
    assert pod.spec is not None
    return pod.spec


def _node_name(pod: client.V1Pod) -> str:
    node_name = _pod_spec(pod).node_name
    assert node_name is not None
    return node_name


def _kwok_nodes(api: client.ApiClient) -> list[client.V1Node]:
    return [
        n
        for n in client.CoreV1Api(api).list_node().items
        if (_metadata(n).annotations or {}).get(NODE_ANNOTATION) == "fake"
    ]


def _live_pods(api: client.ApiClient, namespace: str, app: str) -> list[client.V1Pod]:
    return [p for p in pods_of(api, namespace, f"app={app}") if _metadata(p).deletion_timestamp is None]


def _images(api: client.ApiClient, namespace: str, app: str) -> set[str | None]:
    return {_pod_spec(p).containers[0].image for p in _live_pods(api, namespace, app)}


def _pulling_fails(api: client.ApiClient, namespace: str, app: str) -> client.V1Pod | None:
    for pod in _live_pods(api, namespace, app):
        assert pod.status is not None
        waiting = [s.state.waiting for s in pod.status.container_statuses or [] if s.state and s.state.waiting]
        if waiting and waiting[0].reason in ("ErrImagePull", "ImagePullBackOff"):
            return pod
    return None


def test_stateful_set_pods_start_in_order_on_kwok_nodes(
    lab: LabCluster, api_client: client.ApiClient, namespace: str
) -> None:
    client.AppsV1Api(api_client).create_namespaced_stateful_set(namespace, as_body(_stateful_set("db", "OrderedReady")))
    wait_for(lambda: _rolled_out(lab, namespace, "statefulset/db"), what="db rolled out")
    pods = {_name(p): p for p in _live_pods(api_client, namespace, "db")}
    assert sorted(pods) == ["db-0", "db-1", "db-2"]
    kwok = {_name(n) for n in _kwok_nodes(api_client)}
    assert {_pod_spec(p).node_name for p in pods.values()} <= kwok
    for previous, following in (("db-0", "db-1"), ("db-1", "db-2")):
        previous_status = pods[previous].status
        assert previous_status is not None and previous_status.conditions is not None
        ready = next(c for c in previous_status.conditions if c.type == "Ready")
        created = _metadata(pods[following]).creation_timestamp
        assert created is not None and ready.last_transition_time is not None
        assert created >= ready.last_transition_time


def test_stateful_set_parallel_rollout_undo_after_a_bad_image_recovers(
    lab: LabCluster, api_client: client.ApiClient, namespace: str
) -> None:
    client.AppsV1Api(api_client).create_namespaced_stateful_set(namespace, as_body(_stateful_set("db", "Parallel")))
    wait_for(lambda: _rolled_out(lab, namespace, "statefulset/db"), what="db rolled out")
    _kubectl(lab, "-n", namespace, "set", "image", "statefulset/db", f"app={BAD}")
    wait_for(lambda: _pulling_fails(api_client, namespace, "db"), what="a db pod failing to pull")
    _kubectl(lab, "-n", namespace, "rollout", "undo", "statefulset/db")
    wait_for(lambda: _rolled_out(lab, namespace, "statefulset/db"), timeout=120, what="db rolled back")
    assert _images(api_client, namespace, "db") == {GOOD}


def test_stateful_set_ordered_ready_rollout_undo_needs_the_stuck_pod_deleted(
    lab: LabCluster, api_client: client.ApiClient, namespace: str
) -> None:
    """Kubernetes' documented "forced rollback": with OrderedReady, the controller waits for the broken pod to
    become Ready before it replaces it, so reverting the template is not enough until that pod is deleted."""
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_stateful_set(namespace, as_body(_stateful_set("db", "OrderedReady")))
    wait_for(lambda: _rolled_out(lab, namespace, "statefulset/db"), what="db rolled out")
    good_status = apps.read_namespaced_stateful_set("db", namespace).status
    assert good_status is not None
    good_revision = good_status.current_revision
    _kubectl(lab, "-n", namespace, "set", "image", "statefulset/db", f"app={BAD}")
    stuck = wait_for(lambda: _pulling_fails(api_client, namespace, "db"), what="db-2 failing to pull")
    assert _metadata(stuck).name == "db-2"
    _kubectl(lab, "-n", namespace, "rollout", "undo", "statefulset/db")

    def reverted() -> bool:
        s = apps.read_namespaced_stateful_set("db", namespace)
        assert s.status is not None and s.status.observed_generation is not None
        assert s.metadata is not None and s.metadata.generation is not None
        return s.status.observed_generation >= s.metadata.generation and s.status.update_revision == good_revision

    wait_for(reverted, what="the StatefulSet back on its good revision")
    time.sleep(5)  # the controller has seen the revert; it still keeps the broken pod
    assert _pod_spec(client.CoreV1Api(api_client).read_namespaced_pod("db-2", namespace)).containers[0].image == BAD
    _kubectl(lab, "-n", namespace, "delete", "pod", "db-2", "--wait=false")
    wait_for(lambda: _rolled_out(lab, namespace, "statefulset/db"), timeout=120, what="db rolled back")
    assert _images(api_client, namespace, "db") == {GOOD}


def test_daemon_set_runs_on_every_kwok_node_and_rollout_undo_recovers(
    lab: LabCluster, api_client: client.ApiClient, namespace: str
) -> None:
    nodes = _kwok_nodes(api_client)
    assert all(n.spec is not None and not n.spec.taints for n in nodes), (
        "an untainted KWOK node takes every DaemonSet pod"
    )
    client.AppsV1Api(api_client).create_namespaced_daemon_set(
        namespace,
        as_body(
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "agent"},
                "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": _template("agent", GOOD)},
            }
        ),
    )
    wait_for(lambda: _rolled_out(lab, namespace, "daemonset/agent"), what="agent rolled out")
    pods = _live_pods(api_client, namespace, "agent")
    assert sorted(_node_name(p) for p in pods) == sorted(_name(n) for n in nodes)

    _kubectl(lab, "-n", namespace, "set", "image", "daemonset/agent", f"app={BAD}")
    wait_for(lambda: _pulling_fails(api_client, namespace, "agent"), what="an agent pod failing to pull")
    _kubectl(lab, "-n", namespace, "rollout", "undo", "daemonset/agent")
    wait_for(lambda: _rolled_out(lab, namespace, "daemonset/agent"), timeout=120, what="agent rolled back")
    assert _images(api_client, namespace, "agent") == {GOOD}
    assert len(_live_pods(api_client, namespace, "agent")) == len(nodes)


def _job_condition(job: client.V1Job) -> str | None:
    assert job.status is not None
    return next(
        (c.type for c in job.status.conditions or [] if c.type in ("Complete", "Failed") and c.status == "True"), None
    )


def test_cron_job_runs_fail_until_the_job_template_is_fixed(api_client: client.ApiClient, namespace: str) -> None:
    """Slow by nature: the CronJob controller runs at most one Job a minute."""
    batch = client.BatchV1Api(api_client)
    failing = container("shop/report:1.0", env={"LAB_EXIT_CODE": "3"})
    batch.create_namespaced_cron_job(
        namespace,
        as_body(
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "report"},
                "spec": {
                    "schedule": "*/1 * * * *",
                    "jobTemplate": {
                        "spec": {
                            "backoffLimit": 0,
                            "template": {
                                "spec": {
                                    "restartPolicy": "Never",
                                    "containers": [failing],
                                    "terminationGracePeriodSeconds": 0,
                                }
                            },
                        }
                    },
                },
            }
        ),
    )

    def jobs() -> list[client.V1Job]:
        return list(batch.list_namespaced_job(namespace).items)

    failed = wait_for(
        lambda: next((j for j in jobs() if _job_condition(j) == "Failed"), None), timeout=150, what="a failed run"
    )
    owners = _metadata(failed).owner_references
    assert owners is not None and owners[0].kind == "CronJob"
    assert failed.status is not None and failed.status.conditions is not None
    assert next(c.reason for c in failed.status.conditions if c.type == "Failed") == "BackoffLimitExceeded"

    fixed_at = datetime.now(UTC)
    batch.patch_namespaced_cron_job(
        "report",
        namespace,
        {
            "spec": {
                "jobTemplate": {
                    "spec": {
                        "template": {"spec": {"containers": [{"name": "app", "image": "shop/report:1.0", "env": None}]}}
                    }
                }
            }
        },
    )

    def created_after_fix(job: client.V1Job) -> bool:
        created = _metadata(job).creation_timestamp
        assert created is not None
        return created >= fixed_at

    def succeeded_after_fix() -> client.V1Job | None:
        return next((j for j in jobs() if created_after_fix(j) and _job_condition(j) == "Complete"), None)

    succeeded = wait_for(succeeded_after_fix, timeout=150, what="a successful run after the fix")
    assert succeeded.spec is not None and succeeded.spec.template.spec is not None
    assert not succeeded.spec.template.spec.containers[0].env
    cron_status = batch.read_namespaced_cron_job("report", namespace).status
    assert cron_status is not None and cron_status.last_successful_time is not None
