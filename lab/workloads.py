"""Workload manifests and waits used by the lab tests, the scenario suite and the demo: small builders, no magic."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from kubernetes import client, utils

T = TypeVar("T")


def container(
    image: str,
    *,
    name: str = "app",
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    command: list[str] | None = None,
    memory_limit: str | None = None,
    cpu_request: str | None = None,
    env_from_configmap: str | None = None,
    env_refs: list[dict[str, Any]] | None = None,
    ports: list[int] | None = None,
    liveness: dict[str, Any] | None = None,
    readiness: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One container; `env_refs` are env entries taken as they are (valueFrom a ConfigMap or Secret key)."""
    spec: dict[str, Any] = {"name": name, "image": image}
    if command:
        spec["command"] = command
    if env or env_refs:
        spec["env"] = [{"name": key, "value": value} for key, value in (env or {}).items()] + list(env_refs or [])
    if args:
        spec["args"] = args
    if memory_limit or cpu_request:
        spec["resources"] = {"limits": {}, "requests": {}}
        if memory_limit:
            spec["resources"]["limits"]["memory"] = spec["resources"]["requests"]["memory"] = memory_limit
        if cpu_request:
            spec["resources"]["requests"]["cpu"] = cpu_request
    if env_from_configmap:
        spec["envFrom"] = [{"configMapRef": {"name": env_from_configmap}}]
    if ports:
        spec["ports"] = [{"containerPort": port} for port in ports]
    if liveness:
        spec["livenessProbe"] = liveness
    if readiness:
        spec["readinessProbe"] = readiness
    return spec


def http_probe(path: str = "/healthz", port: int = 8080, *, period: int = 1, failures: int = 2) -> dict[str, Any]:
    """An httpGet probe that answers fast in the lab (the lab kubelet succeeds on declared ports and health paths)."""
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 1,
    }


def _pod_template(
    name: str,
    image: str,
    init_containers: list[dict[str, Any]] | None,
    sidecars: list[dict[str, Any]] | None,
    **container_options: Any,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [container(image, **container_options), *(sidecars or [])],
        "terminationGracePeriodSeconds": 0,
    }
    if init_containers:
        spec["initContainers"] = init_containers
    return {"metadata": {"labels": {"app": name}}, "spec": spec}


def deployment(
    name: str,
    image: str = "nginx:1.27",
    *,
    replicas: int = 1,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    init_containers: list[dict[str, Any]] | None = None,
    sidecars: list[dict[str, Any]] | None = None,
    progress_deadline_seconds: int = 30,
    **container_options: Any,
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline_seconds,
            "selector": {"matchLabels": {"app": name}},
            "template": _pod_template(name, image, init_containers, sidecars, **container_options),
        },
    }


def statefulset(
    name: str,
    image: str = "shop/db:1.0",
    *,
    replicas: int = 2,
    init_containers: list[dict[str, Any]] | None = None,
    **container_options: Any,
) -> dict[str, Any]:
    """Ordered pods `name-0`, `name-1`, ...; the headless Service it names need not exist in the lab."""
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": _pod_template(name, image, init_containers, None, **container_options),
        },
    }


def daemonset(name: str, image: str = "shop/agent:1.0", **container_options: Any) -> dict[str, Any]:
    """One pod per lab node."""
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": _pod_template(name, image, None, None, **container_options),
        },
    }


def job(
    name: str, image: str = "shop/batch:1.0", *, backoff_limit: int = 1, **container_options: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container(image, **container_options)]}},
        },
    }


def cronjob(
    name: str, image: str = "shop/batch:1.0", *, schedule: str = "* * * * *", **container_options: Any
) -> dict[str, Any]:
    """A CronJob that runs every minute, one run at a time, whose failed runs fail fast (no retries)."""
    template = job(name, image, backoff_limit=0, **container_options)["spec"]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {"spec": template},
        },
    }


def pod(name: str, image: str = "shop/debug:1.0", **container_options: Any) -> dict[str, Any]:
    """A bare Pod: no controller, so nothing to roll back."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [container(image, **container_options)], "terminationGracePeriodSeconds": 0},
    }


def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def resource_quota(name: str, hard: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name}, "spec": {"hard": hard}}


def limit_range(name: str, *, default_memory: str | None = None, max_memory: str | None = None) -> dict[str, Any]:
    """Per-container memory: a default limit (set on pods that have none) and/or a maximum."""
    limit: dict[str, Any] = {"type": "Container"}
    if default_memory:
        limit["default"] = {"memory": default_memory}
        limit["defaultRequest"] = {"memory": default_memory}
    if max_memory:
        limit["max"] = {"memory": max_memory}
    return {"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": name}, "spec": {"limits": [limit]}}


def create(api: client.ApiClient, namespace: str, manifest: dict[str, Any]) -> None:
    """Create any of the manifests above in `namespace`."""
    utils.create_from_dict(api, manifest, namespace=namespace)  # type: ignore[no-untyped-call]


def as_body(body: dict[str, Any]) -> Any:
    """`body` unchanged: the client sends a dict as it is, but its typed signatures name the model classes."""
    return cast(Any, body)


def create_namespace(api: client.ApiClient, name: str, labels: dict[str, str] | None = None) -> str:
    """Create `name` and wait for its default ServiceAccount, without which no pod can be created."""
    core = client.CoreV1Api(api)
    core.create_namespace(as_body({"metadata": {"name": name, "labels": labels or {}}}))
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
    assert pod.status is not None
    return {
        s.state.waiting.reason
        for s in pod.status.container_statuses or []
        if s.state and s.state.waiting and s.state.waiting.reason is not None
    }


def rollout_complete(api: client.ApiClient, namespace: str, name: str) -> bool:
    """Like `kubectl rollout status`: every replica updated, available, and no old pods left."""
    d = client.AppsV1Api(api).read_namespaced_deployment(name, namespace)
    s, spec = d.status, d.spec
    assert s is not None and spec is not None and d.metadata is not None and d.metadata.generation is not None
    wanted = spec.replicas
    return bool(
        (s.observed_generation or 0) >= d.metadata.generation
        and (s.updated_replicas or 0) == wanted
        and (s.ready_replicas or 0) == wanted
        and (s.available_replicas or 0) == wanted
        and (s.replicas or 0) == wanted
    )


def workload_ready(api: client.ApiClient, namespace: str, kind: str, name: str) -> bool:
    """Whether a workload is fully rolled out and Ready, per kind (a CronJob: one of its runs succeeded)."""
    apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
    if kind == "Deployment":
        return rollout_complete(api, namespace, name)
    if kind == "StatefulSet":
        sts = apps.read_namespaced_stateful_set(name, namespace)
        s = sts.status
        assert (
            s is not None and sts.spec is not None and sts.metadata is not None and sts.metadata.generation is not None
        )
        return bool(
            (s.observed_generation or 0) >= sts.metadata.generation
            and s.update_revision
            and s.current_revision == s.update_revision
            and (s.ready_replicas or 0) == sts.spec.replicas
        )
    if kind == "DaemonSet":
        ds = apps.read_namespaced_daemon_set(name, namespace)
        ds_status = ds.status
        assert ds_status is not None and ds.metadata is not None and ds.metadata.generation is not None
        return bool(
            (ds_status.observed_generation or 0) >= ds.metadata.generation
            and ds_status.desired_number_scheduled
            and ds_status.number_ready == ds_status.desired_number_scheduled
            and ds_status.updated_number_scheduled == ds_status.desired_number_scheduled
        )
    if kind == "CronJob":
        cron_status = batch.read_namespaced_cron_job(name, namespace).status
        assert cron_status is not None
        return cron_status.last_successful_time is not None
    if kind == "Pod":
        pod_status = client.CoreV1Api(api).read_namespaced_pod(name, namespace).status
        assert pod_status is not None
        conditions = pod_status.conditions or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)
    return True  # ConfigMaps, quotas, LimitRanges: there when created
