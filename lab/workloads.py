"""Workload manifests and waits used by the lab tests, the scenario suite and the demo: small builders, no magic."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")


def container(image: str, *, name: str = "app", env: dict[str, str] | None = None, args: list[str] | None = None,
              memory_limit: str | None = None, env_from_configmap: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "image": image}
    if env:
        spec["env"] = [{"name": key, "value": value} for key, value in env.items()]
    if args:
        spec["args"] = args
    if memory_limit:
        spec["resources"] = {"limits": {"memory": memory_limit}, "requests": {"memory": memory_limit}}
    if env_from_configmap:
        spec["envFrom"] = [{"configMapRef": {"name": env_from_configmap}}]
    return spec


def deployment(name: str, image: str = "nginx:1.27", *, replicas: int = 1, labels: dict[str, str] | None = None,
               annotations: dict[str, str] | None = None, **container_options: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 30,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [container(image, **container_options)],
                                  "terminationGracePeriodSeconds": 0}},
        },
    }


def job(name: str, image: str = "shop/batch:1.0", *, backoff_limit: int = 1, **container_options: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": {
            "restartPolicy": "Never", "containers": [container(image, **container_options)]}}},
    }


def create_namespace(api: client.ApiClient, name: str, labels: dict[str, str] | None = None) -> str:
    """Create `name` and wait for its default ServiceAccount, without which no pod can be created."""
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name, "labels": labels or {}}})
    wait_for(lambda: _has_default_service_account(core, name), what=f"the default ServiceAccount in {name}")
    return name


def _has_default_service_account(core: client.CoreV1Api, namespace: str) -> bool:
    return bool(core.list_namespaced_service_account(namespace, field_selector="metadata.name=default").items)


def wait_for(probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.2, what: str = "") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` when time runs out."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or probe}; last value: {last!r}")


def pods_of(api: client.ApiClient, namespace: str, selector: str) -> list[client.V1Pod]:
    return list(client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items)


def waiting_reasons(pod: client.V1Pod) -> set[str]:
    return {s.state.waiting.reason for s in pod.status.container_statuses or [] if s.state and s.state.waiting}


def rollout_complete(api: client.ApiClient, namespace: str, name: str) -> bool:
    """Like `kubectl rollout status`: every replica updated, available, and no old pods left."""
    d = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    s = d.status
    wanted = d.spec.replicas
    return bool(
        (s.observed_generation or 0) >= d.metadata.generation
        and (s.updated_replicas or 0) == wanted
        and (s.ready_replicas or 0) == wanted
        and (s.available_replicas or 0) == wanted
        and (s.replicas or 0) == wanted
    )
