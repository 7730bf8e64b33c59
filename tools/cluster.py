"""Access to the Kubernetes API for the tools: raw API JSON in, raw API JSON out, one error type.

Objects are plain dicts in the API's own shape (camelCase), as `kubectl get -o json`
shows them, so diffs, snapshots and policy checks all read the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from core import api_errors, k8s
from core.config import Settings
from core.redaction import Redactor
from tools import objects
from tools.results import api_status

FIELD_MANAGER = "amos"
REQUEST_TIMEOUT_SECONDS = 30.0
STRATEGIC_MERGE = "application/strategic-merge-patch+json"


class ApiCallError(Exception):
    """A Kubernetes API call failed; `str()` is `<API call> failed: <status> <reason>: <message>`."""

    def __init__(self, call: str, cause: BaseException) -> None:
        self.call = call
        self.cause = cause
        self.status, self.detail = api_status(cause)
        super().__init__(f"{call} failed: {self.detail}")

    @property
    def conflict(self) -> bool:
        return self.status == 409


@dataclass(frozen=True)
class _Kind:
    api: str  # attribute of ClusterAccess holding the API group client
    suffix: str  # e.g. "namespaced_deployment" in read_namespaced_deployment


KINDS: dict[str, _Kind] = {
    "Pod": _Kind("core", "namespaced_pod"),
    "ConfigMap": _Kind("core", "namespaced_config_map"),
    "Event": _Kind("core", "namespaced_event"),
    "Deployment": _Kind("apps", "namespaced_deployment"),
    "ReplicaSet": _Kind("apps", "namespaced_replica_set"),
    "ControllerRevision": _Kind("apps", "namespaced_controller_revision"),
    "StatefulSet": _Kind("apps", "namespaced_stateful_set"),
    "DaemonSet": _Kind("apps", "namespaced_daemon_set"),
    "Job": _Kind("batch", "namespaced_job"),
    "CronJob": _Kind("batch", "namespaced_cron_job"),
}


class ClusterAccess:
    """What every tool needs: API clients, the settings and the redactor."""

    def __init__(self, api_client: client.ApiClient, settings: Settings, redactor: Redactor) -> None:
        self.api_client = api_client
        self.settings = settings
        self.redactor = redactor
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)

    def for_namespace(self, namespace: str) -> ClusterAccess:
        """The same access, its redactor scoped to `namespace`: another namespace's Secret values never blind it."""
        return ClusterAccess(self.api_client, self.settings, self.redactor.scope(namespace))

    # --- generic calls -------------------------------------------------------------------------

    def _method(self, kind: str, verb: str) -> tuple[str, Callable[..., Any]]:
        spec = KINDS.get(kind)
        if spec is None:
            raise ValueError(f"unsupported kind {kind!r}; known: {', '.join(sorted(KINDS))}")
        name = f"{verb}_{spec.suffix}"
        return name, getattr(getattr(self, spec.api), name)

    def _raw(self, name: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
        try:
            response = method(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
            return bytes(response.data)
        except Exception as error:  # every failure of a call becomes one typed error naming the call
            api_errors.report(self.api_client, name, error)
            raise ApiCallError(name, error) from error

    def _json(self, name: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        raw = self._raw(name, method, *args, **kwargs)
        try:
            return json.loads(raw)
        except ValueError as error:
            raise ApiCallError(name, error) from error

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        call, method = self._method(kind, "read")
        result: dict[str, Any] = self._json(call, method, name, namespace)
        result.setdefault("kind", kind)
        return result

    def list_objects(
        self, kind: str, namespace: str, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> list[dict[str, Any]]:
        call, method = self._method(kind, "list")
        kwargs: dict[str, Any] = {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if field_selector:
            kwargs["field_selector"] = field_selector
        result = self._json(call, method, namespace, **kwargs)
        items: list[dict[str, Any]] = result.get("items") or []
        for item in items:  # list items come without their kind
            item.setdefault("kind", kind)
        return items

    def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        """Strategic-merge patch; a `metadata.resourceVersion` in `body` makes it conditional (409 if stale)."""
        call, method = self._method(kind, "patch")
        result: dict[str, Any] = self._json(
            ("dry-run of " if dry_run else "") + call,
            method,
            name,
            namespace,
            body,
            dry_run="All" if dry_run else None,
            field_manager=FIELD_MANAGER,
            _content_type=STRATEGIC_MERGE,
        )
        return result

    def replace(self, kind: str, namespace: str, name: str, body: dict[str, Any], *, dry_run: bool) -> dict[str, Any]:
        """PUT the whole object; its `metadata.resourceVersion` is the precondition."""
        call, method = self._method(kind, "replace")
        result: dict[str, Any] = self._json(
            ("dry-run of " if dry_run else "") + call,
            method,
            name,
            namespace,
            body,
            dry_run="All" if dry_run else None,
            field_manager=FIELD_MANAGER,
        )
        return result

    # --- special calls -------------------------------------------------------------------------

    def evict(self, namespace: str, name: str, uid: str, *, dry_run: bool) -> None:
        """Eviction API: honours PodDisruptionBudgets (429 when one would be violated); `uid` guards a re-created pod."""
        delete_options: dict[str, Any] = {"preconditions": {"uid": uid}}
        if dry_run:
            delete_options["dryRun"] = ["All"]
        body = {
            "apiVersion": "policy/v1",
            "kind": "Eviction",
            "metadata": {"name": name, "namespace": namespace},
            "deleteOptions": delete_options,
        }
        call = "create_namespaced_pod_eviction"
        self._raw(
            ("dry-run of " if dry_run else "") + call,
            self.core.create_namespaced_pod_eviction,
            name,
            namespace,
            body,
            dry_run="All" if dry_run else None,
            field_manager=FIELD_MANAGER,
        )

    def pod_log(
        self, namespace: str, pod: str, *, container: str, previous: bool, tail_lines: int, limit_bytes: int
    ) -> str:
        raw = self._raw(
            "read_namespaced_pod_log",
            self.core.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            previous=previous,
            tail_lines=tail_lines,
            limit_bytes=limit_bytes,
        )
        return raw.decode("utf-8", errors="replace")

    def secret_keys(self, namespace: str, name: str) -> list[str]:
        """The keys of a Secret, never its values; the values only teach the redactor what to hide."""
        secret = self._json("read_namespaced_secret", self.core.read_namespaced_secret, name, namespace)
        data: dict[str, str] = secret.get("data") or {}
        self.redactor.add_secret_data(data, namespace=namespace, secret=name)
        keys = sorted(data)
        del secret, data
        return keys

    # --- relations -----------------------------------------------------------------------------

    def replicasets_of(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        """The ReplicaSets a Deployment owns (its rollout history), oldest revision first."""
        namespace = objects.meta(deployment).get("namespace", "")
        selector = objects.label_selector((deployment.get("spec") or {}).get("selector"))
        found = [
            rs
            for rs in self.list_objects("ReplicaSet", namespace, label_selector=selector or None)
            if objects.owned_by(rs, deployment)
        ]
        return sorted(found, key=lambda rs: objects.revision(rs) or 0)

    def controller_revisions_of(self, workload: dict[str, Any]) -> list[dict[str, Any]]:
        """The ControllerRevisions a StatefulSet or DaemonSet controls (its rollout history), oldest first."""
        namespace = objects.meta(workload).get("namespace", "")
        selector = objects.label_selector((workload.get("spec") or {}).get("selector"))
        uid = objects.meta(workload).get("uid")
        found = [
            revision
            for revision in self.list_objects("ControllerRevision", namespace, label_selector=selector or None)
            if (objects.controller_ref(revision) or {}).get("uid") == uid
        ]
        return sorted(found, key=lambda revision: objects.revision(revision) or 0)

    def history_of(self, workload: dict[str, Any]) -> list[dict[str, Any]]:
        """A workload's rollout history, oldest first: ReplicaSets of a Deployment, ControllerRevisions of a
        StatefulSet or DaemonSet; other kinds keep none."""
        kind = workload.get("kind")
        if kind == "Deployment":
            return self.replicasets_of(workload)
        if kind in k8s.CONTROLLER_REVISION_KINDS:
            return self.controller_revisions_of(workload)
        return []

    def jobs_of(self, cronjob: dict[str, Any]) -> list[dict[str, Any]]:
        """The Jobs a CronJob created (its controller reference), oldest first."""
        namespace = objects.meta(cronjob).get("namespace", "")
        uid = objects.meta(cronjob).get("uid")
        found = [
            job for job in self.list_objects("Job", namespace) if (objects.controller_ref(job) or {}).get("uid") == uid
        ]
        return sorted(found, key=lambda job: objects.meta(job).get("creationTimestamp") or "")

    def pods_of(self, workload: dict[str, Any]) -> list[dict[str, Any]]:
        """The pods a workload controls (a Pod is its own; a CronJob's are those of its Jobs)."""
        kind = workload.get("kind")
        if kind == "Pod":
            return [workload]
        namespace = objects.meta(workload).get("namespace", "")
        if kind == "CronJob":
            jobs = self.jobs_of(workload)
            every = self.list_objects("Pod", namespace) if jobs else []
            return [pod for pod in every if any(objects.owned_by(pod, job) for job in jobs)]
        selector = objects.label_selector((workload.get("spec") or {}).get("selector"))
        pods = self.list_objects("Pod", namespace, label_selector=selector or None)
        if kind == "Deployment":
            owners = self.replicasets_of(workload)
            return [pod for pod in pods if any(objects.owned_by(pod, rs) for rs in owners)]
        if kind in ("ReplicaSet", *k8s.POD_CONTROLLER_KINDS):
            return [pod for pod in pods if objects.owned_by(pod, workload)]
        raise ValueError(f"cannot list the pods of a {kind}")
