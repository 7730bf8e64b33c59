"""LimitRange and ResourceQuota on the lab's real API server: the default admission plugins (LimitRanger,
ResourceQuota) are on, the lab's OOM rule reads the limit as admitted, and a quota that forbids pods
shows on the ReplicaSet the way the ReplicaSet controller reports it."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from lab.workloads import deployment, pods_of, rollout_complete, wait_for
from tests.manifests import as_body

pytestmark = pytest.mark.lab


def _limit_range(api: client.ApiClient, namespace: str, limit: dict[str, Any]) -> None:
    client.CoreV1Api(api).create_namespaced_limit_range(
        namespace, as_body({"metadata": {"name": "limits"}, "spec": {"limits": [{"type": "Container", **limit}]}})
    )


def _replica_set(api: client.ApiClient, namespace: str, app: str) -> client.V1ReplicaSet:
    return client.AppsV1Api(api).list_namespaced_replica_set(namespace, label_selector=f"app={app}").items[0]


def _failed_create(api: client.ApiClient, namespace: str, app: str) -> client.V1ReplicaSetCondition | None:
    replica_sets = client.AppsV1Api(api).list_namespaced_replica_set(namespace, label_selector=f"app={app}").items
    for replica_set in replica_sets:
        assert replica_set.status is not None
        for condition in replica_set.status.conditions or []:
            if condition.type == "ReplicaFailure" and condition.status == "True":
                return condition
    return None


def _events_of(api: client.ApiClient, namespace: str, name: str, reason: str) -> list[client.CoreV1Event]:
    return list(
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={name},reason={reason}")
        .items
    )


def _set_memory_limit(api: client.ApiClient, namespace: str, name: str, limit: str) -> None:
    client.AppsV1Api(api).patch_namespaced_deployment(
        name,
        namespace,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {"name": "app", "resources": {"limits": {"memory": limit}, "requests": {"memory": limit}}}
                        ]
                    }
                }
            }
        },
    )


def test_limit_range_default_limit_is_the_one_the_oom_rule_uses(api_client: client.ApiClient, namespace: str) -> None:
    _limit_range(api_client, namespace, {"default": {"memory": "128Mi"}, "defaultRequest": {"memory": "64Mi"}})
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace, as_body(deployment("cache", "shop/cache:2.1", env={"LAB_MEMORY_MI": "300"}))
    )

    def oom_killed() -> client.V1Pod | None:
        for pod in pods_of(api_client, namespace, "app=cache"):
            assert pod.status is not None
            for status in pod.status.container_statuses or []:
                last = status.last_state.terminated if status.last_state else None
                if last and (last.reason, last.exit_code) == ("OOMKilled", 137):
                    return pod
        return None

    pod = wait_for(oom_killed, what="OOMKilled under the LimitRange default")
    assert pod.spec is not None and pod.spec.containers[0].resources is not None
    assert pod.spec.containers[0].resources.limits == {"memory": "128Mi"}
    assert pod.metadata is not None and pod.metadata.annotations is not None
    assert "LimitRanger plugin set" in pod.metadata.annotations["kubernetes.io/limit-ranger"]
    _set_memory_limit(api_client, namespace, "cache", "512Mi")
    wait_for(lambda: rollout_complete(api_client, namespace, "cache"), timeout=60, what="Ready with 512Mi")


def test_limit_range_maximum_forbids_the_pods(api_client: client.ApiClient, namespace: str) -> None:
    _limit_range(api_client, namespace, {"max": {"memory": "256Mi"}})
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace, as_body(deployment("cache", "shop/cache:2.1", memory_limit="512Mi"))
    )
    condition = wait_for(lambda: _failed_create(api_client, namespace, "cache"), what="ReplicaFailure")
    assert condition.reason == "FailedCreate"
    assert condition.message is not None
    assert "maximum memory usage per Container is 256Mi, but limit is 512Mi" in condition.message
    _set_memory_limit(api_client, namespace, "cache", "256Mi")
    wait_for(lambda: rollout_complete(api_client, namespace, "cache"), timeout=60, what="Ready within the maximum")


def test_resource_quota_leaves_the_replica_set_failing_to_create_until_it_is_raised(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_resource_quota(
        namespace, as_body({"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "2"}}})
    )

    def quota_hard() -> dict[str, str] | None:
        status = core.read_namespaced_resource_quota("pods", namespace).status
        assert status is not None
        return status.hard

    wait_for(
        quota_hard,
        what="the quota controller computing the quota's status",
    )
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace, as_body(deployment("web", "nginx:1.27", replicas=3))
    )

    condition = wait_for(lambda: _failed_create(api_client, namespace, "web"), what="ReplicaFailure FailedCreate")
    assert condition.reason == "FailedCreate"
    assert condition.message is not None
    assert "exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2" in condition.message
    replica_set = _replica_set(api_client, namespace, "web")
    assert replica_set.metadata is not None and replica_set.metadata.name is not None
    events = _events_of(api_client, namespace, replica_set.metadata.name, "FailedCreate")
    assert events and events[0].type == "Warning" and "exceeded quota: pods" in (events[0].message or "")
    assert events[0].source is not None and events[0].source.component == "replicaset-controller"

    core.patch_namespaced_resource_quota("pods", namespace, {"spec": {"hard": {"pods": "5"}}})
    wait_for(lambda: rollout_complete(api_client, namespace, "web"), timeout=90, what="3 replicas once raised")
    wait_for(lambda: _failed_create(api_client, namespace, "web") is None, what="ReplicaFailure cleared")
