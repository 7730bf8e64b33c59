"""The guard's trust rules against real objects: the ReplicaSets and ControllerRevisions a real control plane
writes are trusted, with the right revision numbers and templates; one planted by hand is not."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from core.actions import Rollback, SetImage
from core.config import Settings
from lab.workloads import create, daemonset, deployment, statefulset, wait_for
from tools import objects
from tools.policy import IncidentScope, PolicyGuard, WorkloadHistory

pytestmark = pytest.mark.lab

IMAGES = ["shop/web:1.0", "shop/web:1.1", "shop/web:1.2"]


def as_dict(api_client: client.ApiClient, obj: Any) -> dict[str, Any]:
    result: dict[str, Any] = api_client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return result


def read(api_client: client.ApiClient, namespace: str, kind: str) -> dict[str, Any]:
    apps = client.AppsV1Api(api_client)
    readers = {
        "Deployment": apps.read_namespaced_deployment,
        "StatefulSet": apps.read_namespaced_stateful_set,
        "DaemonSet": apps.read_namespaced_daemon_set,
    }
    obj = as_dict(api_client, readers[kind]("web", namespace))
    obj["kind"] = kind
    return obj


def roll_through_images(api_client: client.ApiClient, namespace: str, kind: str) -> None:
    """One rollout per image, each waited for (a controller folds quick successive edits into one revision)."""
    apps = client.AppsV1Api(api_client)
    patchers = {
        "Deployment": apps.patch_namespaced_deployment,
        "StatefulSet": apps.patch_namespaced_stateful_set,
        "DaemonSet": apps.patch_namespaced_daemon_set,
    }
    entries = replicasets if kind == "Deployment" else controller_revisions
    wait_for(lambda: len(entries(api_client, namespace)) == 1 or None, what=f"the first revision of the {kind}")
    for count, image in enumerate(IMAGES[1:], start=2):
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
        patchers[kind]("web", namespace, patch)
        wait_for(lambda: len(entries(api_client, namespace)) == count or None, what=f"revision {count} of the {kind}")  # noqa: B023


def replicasets(api_client: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    found = client.AppsV1Api(api_client).list_namespaced_replica_set(namespace).items
    return [as_dict(api_client, rs) | {"kind": "ReplicaSet"} for rs in found]


def controller_revisions(api_client: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    found = client.AppsV1Api(api_client).list_namespaced_controller_revision(namespace).items
    return [as_dict(api_client, cr) | {"kind": "ControllerRevision"} for cr in found]


def guard(kind: str, namespace: str) -> PolicyGuard:
    return PolicyGuard(Settings(namespaces=[namespace]), IncidentScope(namespace=namespace, kind=kind, name="web"))


def test_real_replicasets_are_trusted_and_a_planted_one_is_not(api_client: client.ApiClient, namespace: str) -> None:
    create(api_client, namespace, deployment("web", IMAGES[0]))
    roll_through_images(api_client, namespace, "Deployment")

    def annotated() -> dict[str, Any] | None:  # the controller writes the revision annotation a moment after
        found = read(api_client, namespace, "Deployment")
        return found if objects.revision(found) == len(IMAGES) else None

    target = wait_for(annotated, what="the Deployment's revision annotation to name the last rollout")
    planted: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": "web-planted",
            "labels": {"app": "planted"},
            "annotations": {"deployment.kubernetes.io/revision": "9"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "web",
                    "uid": target["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "planted"}},
            "template": {
                "metadata": {"labels": {"app": "planted"}},
                "spec": {"containers": [{"name": "app", "image": "evil.example/miner:1"}]},
            },
        },
    }
    create(api_client, namespace, planted)
    history = WorkloadHistory(workload=target, replicasets=replicasets(api_client, namespace))
    assert len(history.replicasets) == 4
    assert sorted(history.revisions()) == [1, 2, 3]
    assert history.images("app") == set(IMAGES)
    assert history.current_revisions() == {3}
    assert history.default_rollback_revision() == 2
    written = history.template_for(1)
    assert written["metadata"]["labels"] == {"app": "web"}
    assert written["spec"]["containers"][0]["image"] == IMAGES[0]

    policy = guard("Deployment", namespace)
    back = SetImage(namespace=namespace, name="web", container="app", image=IMAGES[0])
    assert policy.check(back, target, history).allowed
    foreign = policy.check(
        SetImage(namespace=namespace, name="web", container="app", image="evil.example/miner:1"), target, history
    )
    assert foreign.proposal and not foreign.allowed
    assert not policy.check(Rollback(namespace=namespace, name="web", to_revision=9), target, history).allowed


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_real_controller_revisions_are_trusted(api_client: client.ApiClient, namespace: str, kind: str) -> None:
    manifest = statefulset("web", IMAGES[0], replicas=1) if kind == "StatefulSet" else daemonset("web", IMAGES[0])
    create(api_client, namespace, manifest)
    roll_through_images(api_client, namespace, kind)

    def settled() -> WorkloadHistory | None:
        target = read(api_client, namespace, kind)
        history = WorkloadHistory(workload=target, controller_revisions=controller_revisions(api_client, namespace))
        return history if len(history.revisions()) == 3 and history.current_revisions() else None

    history = wait_for(settled, what=f"three ControllerRevisions of the {kind}")
    assert history.workload is not None
    assert history.images("app") == set(IMAGES)
    assert history.current_revisions() == {3}
    assert history.default_rollback_revision() == 2
    written = history.template_for(1)
    assert "$patch" not in written and written["spec"]["containers"][0]["image"] == IMAGES[0]

    policy = guard(kind, namespace)
    target = history.workload
    assert policy.check(Rollback(namespace=namespace, kind=kind, name="web", to_revision=1), target, history).allowed
    now = policy.check(Rollback(namespace=namespace, kind=kind, name="web", to_revision=3), target, history)
    assert not now.allowed and "already at revision 3" in now.reason
