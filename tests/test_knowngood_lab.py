"""Known-good history on the lab: recorded in a Secret per workload, guarded by resourceVersion, read back by a
new store instance, and the rollback target it gives after back-to-back bad rollouts."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from core.config import Settings
from core.models import ObjectRef
from core.redaction import Redactor
from lab import workloads
from monitors.health import HealthyRevision
from orchestrator.knowngood import Source
from orchestrator.knowngood_records import record_name
from orchestrator.knowngood_store import KnownGoodStore
from tests.manifests import as_body
from tools import objects
from tools.cluster import ClusterAccess

pytestmark = pytest.mark.lab

wait_for = functools.partial(workloads.wait_for, timeout=90.0, interval=0.25)
GOOD = "registry.local/shop/web:v1.4.2"
CRASHING = "registry.local/shop/web:v1.5.0-crash"
MISSING = "registry.local/shop/web:v1.6.0-missing"


@pytest.fixture
def state_namespace(api_client: client.ApiClient, namespace: str) -> Iterator[str]:
    name = workloads.create_namespace(api_client, f"{namespace[:50]}-state")
    yield name
    client.CoreV1Api(api_client).delete_namespace(name, propagation_policy="Background")


def new_store(api_client: client.ApiClient, state_namespace: str) -> KnownGoodStore:
    return KnownGoodStore(ClusterAccess(api_client, Settings(state_namespace=state_namespace), Redactor()))


def set_image(api_client: client.ApiClient, namespace: str, image: str) -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    client.AppsV1Api(api_client).patch_namespaced_deployment("web", namespace, body)


def replicaset_of(access: ClusterAccess, namespace: str, revision: int) -> dict[str, Any] | None:
    deployment = access.get("Deployment", namespace, "web")
    return next((rs for rs in access.replicasets_of(deployment) if objects.revision(rs) == revision), None)


def signal(ref: ObjectRef, rs: dict[str, Any]) -> HealthyRevision:
    return HealthyRevision(
        workload=ref,
        revision=objects.revision(rs),
        template_hash=str(objects.revision_hash(rs)),
        observed_at=datetime.now(UTC),
    )


def test_good_then_crash_then_bad_image_targets_the_first_revision_and_survives_a_new_store(
    api_client: client.ApiClient, namespace: str, state_namespace: str
) -> None:
    store = new_store(api_client, state_namespace)
    ref = ObjectRef(kind="Deployment", namespace=namespace, name="web")
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, as_body(workloads.deployment("web", GOOD)))
    wait_for(lambda: workloads.rollout_complete(api_client, namespace, "web"), what="the first rollout")
    first = wait_for(lambda: replicaset_of(store.access, namespace, 1), what="revision 1")
    assert store.mark_good(signal(ref, first)) is not None

    set_image(api_client, namespace, CRASHING)
    wait_for(lambda: replicaset_of(store.access, namespace, 2), what="revision 2")
    wait_for(
        lambda: (
            objects.revision(current := store.access.get("Deployment", namespace, "web")) == 2
            and objects.observed(current)
        ),
        what="revision 2 current and seen by the controller",
    )
    assert store.mark_bad(ref, note="incident: CrashLoopBackOff") is not None  # handled while 2 was current
    set_image(api_client, namespace, MISSING)
    wait_for(lambda: replicaset_of(store.access, namespace, 3), what="revision 3")

    again = new_store(api_client, state_namespace)  # as after a restart
    choice = again.target(ref)
    assert (choice.target, choice.source) == (1, Source.RECORDED), choice
    record = again.record(ref)
    assert [mark.mark.value for mark in record.marks] == ["good", "bad"]
    assert record.uid == objects.meta(store.access.get("Deployment", namespace, "web"))["uid"]

    secret = client.CoreV1Api(api_client).read_namespaced_secret(record_name(ref), state_namespace)
    assert secret.metadata is not None and secret.metadata.labels is not None and secret.data is not None
    assert secret.type == "Opaque" and secret.metadata.labels["amos.io/record"] == "knowngood"
    stored = json.loads(base64.b64decode(secret.data["record.json"]))
    assert stored["workload"] == ref.model_dump()
    assert (
        not client.CoreV1Api(api_client)
        .list_namespaced_config_map(state_namespace, label_selector="amos.io/record=knowngood")
        .items
    )

    # a concurrent writer moved the Secret: the next mark re-reads and keeps both writes
    secret.metadata.annotations = {**(secret.metadata.annotations or {}), "touched": "by someone"}
    client.CoreV1Api(api_client).replace_namespaced_secret(record_name(ref), state_namespace, secret)
    assert again.mark_bad(ref, 3, note="incident: ImagePullBackOff") is not None
    after = client.CoreV1Api(api_client).read_namespaced_secret(record_name(ref), state_namespace)
    assert after.metadata is not None and after.metadata.annotations is not None
    assert after.metadata.annotations["touched"] == "by someone"
    assert [mark.revision for mark in new_store(api_client, state_namespace).record(ref).marks] == [1, 2, 3]


def test_a_workload_created_again_starts_a_fresh_record(
    api_client: client.ApiClient, namespace: str, state_namespace: str
) -> None:
    store = new_store(api_client, state_namespace)
    ref = ObjectRef(kind="Deployment", namespace=namespace, name="web")
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, as_body(workloads.deployment("web", GOOD)))
    first = wait_for(lambda: replicaset_of(store.access, namespace, 1), what="revision 1")
    assert store.mark_bad(ref, 1) is not None
    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Foreground")
    wait_for(lambda: not apps.list_namespaced_deployment(namespace).items, what="the Deployment to go")
    apps.create_namespaced_deployment(namespace, as_body(workloads.deployment("web", GOOD)))
    again = wait_for(lambda: replicaset_of(store.access, namespace, 1), what="revision 1 of the new Deployment")
    assert objects.meta(again)["uid"] != objects.meta(first)["uid"]
    assert store.mark_good(signal(ref, again)) is not None
    record = store.record(ref)
    assert [mark.mark.value for mark in record.marks] == ["good"]


class HmacSigner:
    """The shape of orchestrator.integrity.StateSigner, with a fixed key."""

    def sign(self, payload: str) -> str:
        return hmac.new(b"test-key", payload.encode(), hashlib.sha256).hexdigest()

    def check(self, payload: str, signature: str | None, what: str) -> None:
        if not signature or not hmac.compare_digest(self.sign(payload), signature):
            raise ValueError(f"{what} failed its integrity check")


def test_a_record_altered_outside_amos_is_not_used(
    api_client: client.ApiClient, namespace: str, state_namespace: str
) -> None:
    access = ClusterAccess(api_client, Settings(state_namespace=state_namespace), Redactor())
    store = KnownGoodStore(access, signer=HmacSigner())
    ref = ObjectRef(kind="Deployment", namespace=namespace, name="web")
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, as_body(workloads.deployment("web", GOOD)))
    first = wait_for(lambda: replicaset_of(access, namespace, 1), what="revision 1")
    assert store.mark_good(signal(ref, first)) is not None
    assert [mark.revision for mark in store.record(ref).marks] == [1]

    core = client.CoreV1Api(api_client)
    secret = core.read_namespaced_secret(record_name(ref), state_namespace)
    assert secret.data is not None
    forged = json.loads(base64.b64decode(secret.data["record.json"]))
    forged["marks"][0]["digest"] = "0000000000000000"  # someone with write access to the state namespace
    secret.data["record.json"] = base64.b64encode(json.dumps(forged).encode()).decode()
    core.replace_namespaced_secret(record_name(ref), state_namespace, secret)
    assert store.record(ref).marks == []
    assert KnownGoodStore(access).record(ref).marks[0].digest == "0000000000000000"  # unsigned reading sees it
