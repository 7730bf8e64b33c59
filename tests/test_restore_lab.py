"""orchestrator.restore on the lab, for every kind that keeps a template: the snapshot comes back (replicas,
containers, probes and limits with it), a person's later change is never overwritten, and a forged snapshot
(another object's uid, a template the workload never ran) is refused with nothing written."""

from __future__ import annotations

import copy
import functools
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from core import k8s
from core.config import Settings
from core.models import ObjectRef
from core.redaction import Redactor
from core.report import ActionStatus
from lab import workloads
from orchestrator.assessment import Baseline
from orchestrator.restore import restore_snapshot
from orchestrator.verify import Judge
from tests.manifests import as_body
from tools import objects
from tools.cluster import ClusterAccess
from tools.policy import IncidentScope, PolicyGuard
from tools.snapshot import Snapshot, take_snapshot
from tools.write import WriteTools

pytestmark = pytest.mark.lab

wait_for = functools.partial(workloads.wait_for, timeout=120.0, interval=0.25)
GOOD = "registry.local/shop/db:v1.4.2"
MISSING = "registry.local/shop/db:v1.5.0-missing"
CRASHING = "registry.local/shop/db:v1.5.0-crash"


def pod_template(app: str, image: str = GOOD) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "app",
                    "image": image,
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                    "resources": {"limits": {"memory": "64Mi", "cpu": "200m"}, "requests": {"memory": "32Mi"}},
                }
            ],
        },
    }


def statefulset(name: str = "db", *, replicas: int = 3, strategy: str = "RollingUpdate") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": {"type": strategy},
            "template": pod_template(name),
        },
    }


def daemonset(name: str = "agent") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": pod_template(name),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        },
    }


def access_for(api_client: client.ApiClient, **settings: Any) -> ClusterAccess:
    return ClusterAccess(api_client, Settings(**settings), Redactor())


def guard(access: ClusterAccess, ref: ObjectRef) -> PolicyGuard:
    return PolicyGuard(access.settings, IncidentScope.of(ref))


def read(access: ClusterAccess, ref: ObjectRef) -> dict[str, Any]:
    return access.get(ref.kind, ref.namespace, ref.name)


def template(obj: dict[str, Any]) -> dict[str, Any]:
    return objects.workload_template(obj)


def set_image(api_client: client.ApiClient, ref: ObjectRef, image: str) -> int:
    """A change to the template (as AMOS's failed fix would make); returns the generation it produced."""
    body = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    apps = client.AppsV1Api(api_client)
    patch = apps.patch_namespaced_stateful_set if ref.kind == "StatefulSet" else apps.patch_namespaced_daemon_set
    patched = patch(ref.name, ref.namespace, body)
    assert patched.metadata is not None and patched.metadata.generation is not None
    return int(patched.metadata.generation)


def healthy(access: ClusterAccess, ref: ObjectRef, obj: dict[str, Any]) -> None:
    verdict = Judge(access, access.settings, stable_seconds=2).verify(Baseline.of(ref, obj))
    pods = [
        (
            objects.meta(p)["name"],
            objects.labels_of(p).get(k8s.CONTROLLER_REVISION_HASH_LABEL),
            objects.is_ready(p),
            (p.get("status") or {}).get("containerStatuses"),
        )
        for p in access.pods_of(read(access, ref))
    ]
    assert verdict.ok, (verdict.text(), read(access, ref).get("status"), pods)


def rolled_out(access: ClusterAccess, ref: ObjectRef) -> bool:
    status = read(access, ref).get("status") or {}
    if ref.kind == "StatefulSet":
        return bool(
            status.get("readyReplicas") == status.get("replicas") == 3
            and status.get("currentRevision") == status.get("updateRevision")
        )
    return bool(
        status.get("desiredNumberScheduled")
        and status.get("numberReady") == status.get("desiredNumberScheduled") == status.get("updatedNumberScheduled")
    )


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_restore_after_a_bad_image_puts_the_known_good_template_back(
    api_client: client.ApiClient, namespace: str, kind: str
) -> None:
    access = access_for(api_client)
    apps = client.AppsV1Api(api_client)
    if kind == "StatefulSet":
        apps.create_namespaced_stateful_set(namespace, as_body(statefulset()))
        ref = ObjectRef(kind=kind, namespace=namespace, name="db")
    else:
        apps.create_namespaced_daemon_set(namespace, as_body(daemonset()))
        ref = ObjectRef(kind=kind, namespace=namespace, name="agent")
    wait_for(lambda: rolled_out(access, ref), what=f"the {kind} rolled out")
    good = read(access, ref)
    snapshot = take_snapshot(access, ref, datetime.now(UTC))
    assert snapshot.controller_revisions and snapshot.uid == objects.meta(good)["uid"]
    assert k8s.LAST_APPLIED_ANNOTATION not in objects.annotations_of(snapshot.workload)

    written = set_image(api_client, ref, MISSING)
    wait_for(
        lambda: any(
            "ImagePullBackOff" in workloads.waiting_reasons(p) or "ErrImagePull" in workloads.waiting_reasons(p)
            for p in workloads.pods_of(api_client, namespace, f"app={ref.name}")
        ),
        what="a pod that cannot pull the new image",
    )

    result = restore_snapshot(access, guard(access, ref), snapshot, written)
    assert result.ok and result.changed, result
    assert result.record is not None and result.record.status is ActionStatus.APPLIED
    assert f"+containers[app].image: {GOOD}" in result.record.diff
    restored = read(access, ref)
    assert template(restored) == template(good)  # containers, probes and limits as they were
    if kind == "StatefulSet":
        assert restored["spec"]["replicas"] == 3
    assert Judge(access, access.settings).verify_restore(snapshot).ok
    healthy(access, ref, snapshot.workload)


def test_an_on_delete_statefulset_gets_its_failing_pods_replaced(api_client: client.ApiClient, namespace: str) -> None:
    access = access_for(api_client)
    client.AppsV1Api(api_client).create_namespaced_stateful_set(namespace, as_body(statefulset(strategy="OnDelete")))
    ref = ObjectRef(kind="StatefulSet", namespace=namespace, name="db")
    wait_for(lambda: rolled_out(access, ref), what="the StatefulSet rolled out")
    snapshot = take_snapshot(access, ref, datetime.now(UTC))
    written = set_image(api_client, ref, CRASHING)
    core = client.CoreV1Api(api_client)
    core.delete_namespaced_pod("db-2", namespace)  # OnDelete: only a deleted pod picks up the new template

    def db_pods() -> list[Any]:  # read as the API's JSON shapes, fields unchecked
        return workloads.pods_of(api_client, namespace, "app=db")

    wait_for(
        lambda: any(
            p.metadata.name == "db-2"
            and (p.status.container_statuses or [None])[0]
            and p.status.container_statuses[0].restart_count >= 1
            for p in db_pods()
        ),
        what="db-2 crashing",
    )

    result = restore_snapshot(access, guard(access, ref), snapshot, written)
    assert result.ok and result.changed and result.replaced_pods == ["db-2"], result
    assert "evicted 1 failing pod" in result.reason
    healthy(access, ref, snapshot.workload)
    images = {p.metadata.name: p.spec.containers[0].image for p in db_pods()}
    assert images == {"db-0": GOOD, "db-1": GOOD, "db-2": GOOD}


def test_restore_refuses_a_forged_snapshot_and_writes_nothing(api_client: client.ApiClient, namespace: str) -> None:
    access = access_for(api_client)
    client.AppsV1Api(api_client).create_namespaced_stateful_set(namespace, as_body(statefulset(replicas=1)))
    ref = ObjectRef(kind="StatefulSet", namespace=namespace, name="db")
    wait_for(lambda: (read(access, ref).get("status") or {}).get("readyReplicas") == 1, what="one ready replica")
    snapshot = take_snapshot(access, ref, datetime.now(UTC))
    written = set_image(api_client, ref, MISSING)
    before = read(access, ref)

    other_uid = copy.deepcopy(snapshot.workload)
    other_uid["metadata"]["uid"] = "6c1d0e9a-0000-4000-8000-000000000000"
    forged_template = copy.deepcopy(snapshot.workload)
    spec = forged_template["spec"]["template"]["spec"]
    spec["hostNetwork"] = True
    spec["containers"][0]["image"] = "evil.example/miner:latest"
    other_field = copy.deepcopy(snapshot.workload)
    other_field["spec"]["serviceName"] = "elsewhere"
    for workload, expected in (
        (other_uid, "taken from another object"),
        (forged_template, "not one this StatefulSet ran"),
        (other_field, "spec.serviceName"),
    ):
        forged = snapshot.model_copy(update={"workload": workload})
        result = restore_snapshot(access, guard(access, ref), forged, written)
        assert not result.ok and result.refused and expected in result.reason, result
        assert result.record is not None and result.record.status is ActionStatus.REFUSED
    after = read(access, ref)
    assert after["metadata"]["generation"] == before["metadata"]["generation"] and after["spec"] == before["spec"]

    # the snapshot AMOS took itself in this process may hold a template the history no longer has
    vouched = snapshot.model_copy(update={"workload": forged_template})
    assert not restore_snapshot(access, guard(access, ref), vouched, written).ok  # strict by default
    genuine = restore_snapshot(access, guard(access, ref), snapshot, written, trusted=True)
    assert genuine.ok and genuine.changed, genuine


def test_cronjob_job_template_is_restored(api_client: client.ApiClient, namespace: str) -> None:
    access = access_for(api_client)
    good = {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "app", "image": GOOD, "resources": {"limits": {"memory": "64Mi"}}}],
                }
            },
        }
    }
    body = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "* * * * *", "jobTemplate": good, "successfulJobsHistoryLimit": 3},
    }
    client.BatchV1Api(api_client).create_namespaced_cron_job(namespace, as_body(body))
    ref = ObjectRef(kind="CronJob", namespace=namespace, name="nightly")
    wait_for(lambda: access.jobs_of(read(access, ref)), timeout=150.0, what="a first run")
    snapshot = take_snapshot(access, ref, datetime.now(UTC))
    assert snapshot.history == [] and snapshot.objects() == ["CronJob/nightly"]
    bad = {
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": MISSING}]}}}}}
    }
    patched = client.BatchV1Api(api_client).patch_namespaced_cron_job("nightly", namespace, bad)
    assert patched.metadata is not None and patched.metadata.generation is not None
    written = int(patched.metadata.generation)

    result = restore_snapshot(access, guard(access, ref), snapshot, written)
    assert result.ok and result.changed, result
    restored = read(access, ref)
    assert restored["spec"]["jobTemplate"] == snapshot.workload["spec"]["jobTemplate"]
    assert json.dumps(restored["spec"]["jobTemplate"]).count(MISSING) == 0
    assert Judge(access, access.settings).verify_restore(snapshot).ok


def test_restore_respects_human_edits(api_client: client.ApiClient, namespace: str) -> None:
    """Moved from test_tools_lab (it tested a second restore in the write tools): the one restore path."""
    access = access_for(api_client)
    manifest = workloads.deployment("web", GOOD, memory_limit="64Mi")
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, as_body(manifest))
    wait_for(lambda: workloads.rollout_complete(api_client, namespace, "web"), what="rollout")
    ref = ObjectRef(kind="Deployment", namespace=namespace, name="web")
    write = WriteTools(access, guard(access, ref))

    def limit() -> str:
        return str(read(access, ref)["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"])

    changed = write.call(
        "set_resources", namespace=namespace, kind="Deployment", name="web", container="app", memory_limit="96Mi"
    )
    assert changed["ok"] and changed["data"]["status"] == "applied", changed
    snapshot: Snapshot | None = write.snapshot_for(ref)
    assert snapshot is not None and limit() == "96Mi"
    restored = restore_snapshot(access, guard(access, ref), snapshot, write.written_generation(ref))
    assert restored.ok and restored.changed, restored
    assert limit() == "64Mi"
    again = restore_snapshot(access, guard(access, ref), snapshot, restored.generation)
    assert again.ok and not again.changed and again.reason == "the spec already matches the snapshot"

    assert write.call(
        "set_resources", namespace=namespace, kind="Deployment", name="web", container="app", memory_limit="100Mi"
    )["ok"]
    body = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": CRASHING}]}}}}
    client.AppsV1Api(api_client).patch_namespaced_deployment("web", namespace, body)  # a person, after AMOS
    conflict = restore_snapshot(access, guard(access, ref), snapshot, write.written_generation(ref))
    assert not conflict.ok and conflict.conflict
    assert conflict.record is not None and conflict.record.status is ActionStatus.FAILED
    assert read(access, ref)["spec"]["template"]["spec"]["containers"][0]["image"] == CRASHING
