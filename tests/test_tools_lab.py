"""The tools against the lab's real API server: reads show what happened, writes really change objects,
and everything the guard refuses, the API rejects or a human changed meanwhile leaves the object as it was."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from core.config import Settings
from core.models import ObjectRef
from core.redaction import Redactor
from core.report import ActionStatus
from lab import workloads
from monitors.health import HealthyRevision
from orchestrator.assessment import Baseline
from orchestrator.knowngood_store import KnownGoodStore
from orchestrator.verify import Judge
from tests.manifests import as_body
from tools import objects
from tools.cluster import ClusterAccess
from tools.policy import IncidentScope, PolicyGuard
from tools.read import ReadTools
from tools.results import ToolStatus
from tools.write import WriteTools

pytestmark = pytest.mark.lab

GOOD = "registry.local/shop/web:v1.4.2"
CRASHING = "registry.local/shop/web:v1.5.0-crash"
SECRET_VALUE = "pa55-word-never-shown"


wait_for = functools.partial(workloads.wait_for, timeout=60.0, interval=0.25)


def container(image: str = GOOD, **extra: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "image": image,
        "args": ["--listen=:8080"],
        "resources": {"limits": {"memory": "64Mi", "cpu": "200m"}, "requests": {"memory": "32Mi", "cpu": "50m"}},
        **extra,
    }


def make_deployment(
    api_client: client.ApiClient, namespace: str, name: str = "web", replicas: int = 1, **container_fields: Any
) -> dict[str, Any]:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container(**container_fields)]},
            },
        },
    }
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, as_body(body))
    return body


def deployment(api_client: client.ApiClient, namespace: str, name: str = "web") -> dict[str, Any]:
    """The Deployment as API JSON, read around the tools under test."""
    # with _preload_content=False the client returns the urllib3 response, not the model its signature names
    response: Any = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace, _preload_content=False)
    result: dict[str, Any] = json.loads(response.data)
    return result


def rolled_out(api_client: client.ApiClient, namespace: str, name: str = "web") -> bool:
    obj = deployment(api_client, namespace, name)
    spec, status = obj["spec"], obj.get("status") or {}
    want = spec["replicas"]
    return bool(
        status.get("observedGeneration", 0) >= obj["metadata"]["generation"]
        and status.get("updatedReplicas", 0) == want
        and status.get("readyReplicas", 0) == want
        and status.get("availableReplicas", 0) == want
        and status.get("replicas", 0) == want
    )


def pods(api_client: client.ApiClient, namespace: str, selector: str = "app=web") -> list[Any]:
    return list(client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector=selector).items)


def restarted_pod(api_client: client.ApiClient, namespace: str, image: str = CRASHING) -> str | None:
    for pod in pods(api_client, namespace):
        for status in pod.status.container_statuses or []:
            if status.image == image and status.restart_count >= 1 and pod.metadata.deletion_timestamp is None:
                return str(pod.metadata.name)
    return None


def set_image_by_hand(api_client: client.ApiClient, namespace: str, image: str, name: str = "web") -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}
    client.AppsV1Api(api_client).patch_namespaced_deployment(name, namespace, body)


def resource_version(api_client: client.ApiClient, namespace: str, name: str = "web") -> str:
    return str(deployment(api_client, namespace, name)["metadata"]["resourceVersion"])


def tools(
    api_client: client.ApiClient, namespace: str, name: str = "web", **settings: Any
) -> tuple[ReadTools, WriteTools]:
    access = ClusterAccess(api_client, Settings(**settings), Redactor())
    scope = IncidentScope(namespace=namespace, kind="Deployment", name=name)
    return ReadTools(access, scope), WriteTools(access, PolicyGuard(access.settings, scope))


@pytest.fixture
def crashing(api_client: client.ApiClient, namespace: str) -> str:
    """Deployment `web`: revision 1 runs GOOD and is ready, revision 2 runs CRASHING; returns a crashed pod."""
    make_deployment(api_client, namespace)
    wait_for(lambda: rolled_out(api_client, namespace), what="first rollout")
    set_image_by_hand(api_client, namespace, CRASHING)
    return str(wait_for(lambda: restarted_pod(api_client, namespace), what="a crashed pod"))


# --- reads ------------------------------------------------------------------------------------------


def test_logs_of_a_crashing_pod_show_its_traceback(api_client: client.ApiClient, namespace: str, crashing: str) -> None:
    read, _ = tools(api_client, namespace)
    previous = read.get_pod_logs(namespace, crashing, previous=True)
    assert previous["ok"], previous
    assert previous["data"]["container"] == "web" and previous["data"]["previous"] is True
    assert "Traceback (most recent call last)" in previous["data"]["log"]
    assert "AttributeError" in previous["data"]["log"]
    tail = read.get_pod_logs(namespace, crashing, container="web", previous=True, tail_lines=1)
    assert tail["ok"] and tail["data"]["log"].count("\n") == 0 and "AttributeError" in tail["data"]["log"]
    missing = read.get_pod_logs(namespace, crashing, container="sidecar")
    assert not missing["ok"] and "container sidecar is not in pod" in missing["error"]
    assert missing["status"] == ToolStatus.REFUSED
    gone = read.get_pod_logs(namespace, "no-such-pod")
    assert not gone["ok"] and gone["error"].startswith("read_namespaced_pod failed: 404")
    assert gone["status"] == ToolStatus.ERROR and previous["status"] == ToolStatus.OK


def test_events_describe_and_owner_chain(api_client: client.ApiClient, namespace: str, crashing: str) -> None:
    read, _ = tools(api_client, namespace)
    events = wait_for(
        lambda: [e for e in read.get_events(namespace, "Pod", crashing)["data"]["events"] if e["reason"] == "BackOff"],
        what="a BackOff event",
    )
    assert events[0]["type"] == "Warning" and events[0]["source"] == "kubelet"
    assert read.get_events(namespace, "Deployment", "web")["data"]["events"], "the deployment controller scaled"
    nothing = read.get_events(namespace, "Pod", "no-such-pod")
    assert nothing["ok"] and nothing["status"] == ToolStatus.NO_DATA and nothing["data"]["events"] == [], nothing

    pod = read.describe(namespace, "pod", crashing)
    assert pod["ok"], pod
    status = pod["data"]["containerStatuses"][0]
    assert status["restartCount"] >= 1 and status["lastState"]["exitCode"] == 1
    assert pod["data"]["owner"].startswith("ReplicaSet/web-")

    dep = read.describe(namespace, "Deployment", "web")["data"]
    assert dep["revision"] == 2 and dep["template"]["containers"][0]["image"] == CRASHING
    assert {c["type"] for c in dep["conditions"]} >= {"Available", "Progressing"}

    chain = read.get_owner_chain(namespace, "Pod", crashing)["data"]["chain"]
    assert [link["kind"] for link in chain] == ["Pod", "ReplicaSet", "Deployment"]
    assert chain[-1]["name"] == "web" and chain[-1]["protected"] is False


def test_describe_job_and_replicaset(api_client: client.ApiClient, namespace: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "nightly"},
        "spec": {
            "backoffLimit": 1,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [container(env=[{"name": "LAB_EXIT_CODE", "value": "3"}])],
                }
            },
        },
    }
    client.BatchV1Api(api_client).create_namespaced_job(namespace, as_body(job))
    read, _ = tools(api_client, namespace)
    described = wait_for(
        lambda: (d := read.describe(namespace, "Job", "nightly")["data"]) and d["status"].get("failed") and d,
        what="a failed job pod",
    )
    assert described["backoffLimit"] == 1 and described["template"]["restartPolicy"] == "Never"
    listed = read.list_pods(namespace, "Job", "nightly")["data"]["pods"]
    assert listed and listed[0]["name"].startswith("nightly-")

    make_deployment(api_client, namespace)
    wait_for(lambda: rolled_out(api_client, namespace), what="rollout")
    rs_name = read.get_rollout_history(namespace, "web")["data"]["revisions"][0]["replicaset"]
    rs = read.describe(namespace, "ReplicaSet", rs_name)["data"]
    assert rs["owner"] == "Deployment/web" and rs["revision"] == 1 and rs["status"]["readyReplicas"] == 1


def test_secret_values_never_appear(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace, as_body({"metadata": {"name": "db"}, "stringData": {"password": SECRET_VALUE}})
    )
    env = [
        {"name": "DB_HOST", "value": "db.shop.svc"},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "DB_USER", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}},
    ]
    make_deployment(api_client, namespace, env=env)
    read, _ = tools(api_client, namespace)
    pod_name = wait_for(lambda: [p.metadata.name for p in pods(api_client, namespace)], what="a pod")[0]
    results = [
        read.describe(namespace, "Deployment", "web"),
        read.describe(namespace, "Pod", pod_name),
        read.get_config_refs(namespace, "Deployment", "web"),
        read.get_rollout_history(namespace, "web"),
    ]
    text = json.dumps(results)
    assert all(result["ok"] for result in results), results
    assert SECRET_VALUE not in text
    refs = {(r["kind"], r["name"]): r for r in results[2]["data"]["refs"]}
    assert refs[("Secret", "db")]["keys"] == ["password"]
    assert refs[("Secret", "db")]["missing_keys"] == ["user"]
    assert results[2]["data"]["missing"] == ["Secret db has no key user"]
    # reading the Secret's keys taught the redactor its values, so a log line quoting one is masked too
    assert SECRET_VALUE not in read.access.redactor.redact_text(f"connecting with {SECRET_VALUE}")


def test_rollout_history_and_missing_config(api_client: client.ApiClient, namespace: str) -> None:
    env = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "web-config", "key": "mode"}}}]
    make_deployment(api_client, namespace, env=env)
    read, _ = tools(api_client, namespace)
    wait_for(lambda: (p := pods(api_client, namespace)) and p[0].status.container_statuses, what="pod status")
    refs = read.get_config_refs(namespace, "Deployment", "web")["data"]
    assert refs["missing"] == ["ConfigMap web-config not found"]
    assert refs["refs"][0]["exists"] is False and refs["refs"][0]["referenced_keys"] == ["mode"]

    set_image_by_hand(api_client, namespace, CRASHING)
    history = wait_for(
        lambda: (
            (h := read.get_rollout_history(namespace, "web")["data"])
            and len(h["revisions"]) == 2
            and h["current_revision"] == 2
            and h
        ),
        what="two revisions",
    )
    assert history["current_revision"] == 2
    assert [r["revision"] for r in history["revisions"]] == [1, 2]
    assert [r["containers"][0]["image"] for r in history["revisions"]] == [GOOD, CRASHING]
    assert history["revisions"][1]["current"] and history["revisions"][0]["containers"][0]["env_names"] == ["MODE"]
    listed = read.list_pods(namespace, "Deployment", "web")["data"]["pods"]
    assert {p["reason"] for p in listed} >= {"CreateContainerConfigError"}


# --- writes -------------------------------------------------------------------------------------------


def test_rollback_returns_the_old_image_and_pods_become_ready(
    api_client: client.ApiClient, namespace: str, crashing: str
) -> None:
    _, write = tools(api_client, namespace)
    result = write.call("rollback_deployment", namespace=namespace, name="web")
    assert result["ok"], result
    assert f"-containers[web].image: {CRASHING}" in result["data"]["diff"]
    assert f"+containers[web].image: {GOOD}" in result["data"]["diff"]
    obj = deployment(api_client, namespace)
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD
    assert "pod-template-hash" not in obj["spec"]["template"]["metadata"]["labels"]
    wait_for(lambda: rolled_out(api_client, namespace), what="pods ready after rollback")
    read, _ = tools(api_client, namespace)
    history = wait_for(
        lambda: (h := read.get_rollout_history(namespace, "web")["data"]) and h["current_revision"] == 3 and h,
        what="the old ReplicaSet to become revision 3",
    )
    assert [(r["revision"], r["containers"][0]["image"]) for r in history["revisions"]] == [(2, CRASHING), (3, GOOD)]
    record = write.recorder[-1]
    assert record.status is ActionStatus.APPLIED and record.verb == "rollback" and record.diff
    snapshot = write.snapshot_for(record.target)
    assert snapshot is not None and snapshot.workload["spec"]["template"]["spec"]["containers"][0]["image"] == CRASHING
    assert len(snapshot.replicasets) == 2


def test_set_resources_raises_memory(api_client: client.ApiClient, namespace: str) -> None:
    make_deployment(api_client, namespace, env=[{"name": "LAB_MEMORY_MI", "value": "100"}])
    wait_for(
        lambda: any(
            (s.last_state and s.last_state.terminated and s.last_state.terminated.reason == "OOMKilled")
            for p in pods(api_client, namespace)
            for s in p.status.container_statuses or []
        ),
        what="OOMKilled",
    )
    _, write = tools(api_client, namespace)
    too_much = write.call(
        "set_resources", namespace=namespace, kind="Deployment", name="web", container="web", memory_limit="512Mi"
    )
    assert not too_much["ok"] and "more than 2x" in too_much["error"]
    result = write.call(
        "set_resources", namespace=namespace, kind="Deployment", name="web", container="web", memory_limit="128Mi"
    )
    assert result["ok"], result
    assert "+containers[web].resources.limits.memory: 128Mi" in result["data"]["diff"]
    limits = deployment(api_client, namespace)["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"memory": "128Mi", "cpu": "200m"}
    wait_for(lambda: rolled_out(api_client, namespace), what="pods ready with more memory")


def test_scale_and_restart(api_client: client.ApiClient, namespace: str) -> None:
    make_deployment(api_client, namespace)
    wait_for(lambda: rolled_out(api_client, namespace), what="rollout")
    _, write = tools(api_client, namespace)
    assert write.call("scale", namespace=namespace, name="web", replicas=3)["ok"]
    assert deployment(api_client, namespace)["spec"]["replicas"] == 3
    wait_for(lambda: rolled_out(api_client, namespace), what="3 ready replicas")

    result = write.call("restart_rollout", namespace=namespace, name="web")
    assert result["ok"], result
    annotations = deployment(api_client, namespace)["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert "+template.annotations.kubectl.kubernetes.io/restartedAt" in result["data"]["diff"]
    wait_for(lambda: rolled_out(api_client, namespace), what="restarted pods ready")
    assert [r.status for r in write.recorder] == [ActionStatus.APPLIED, ActionStatus.APPLIED]


def test_eviction_deletes_a_pod_and_pdbs_hold(api_client: client.ApiClient, namespace: str) -> None:
    make_deployment(api_client, namespace, replicas=2)
    wait_for(lambda: rolled_out(api_client, namespace), what="rollout")
    _, write = tools(api_client, namespace)
    victim = pods(api_client, namespace)[0]
    result = write.call("delete_pod", namespace=namespace, name=victim.metadata.name)
    assert result["ok"], result

    def gone_or_terminating() -> bool:
        try:
            pod = client.CoreV1Api(api_client).read_namespaced_pod(victim.metadata.name, namespace)
        except client.ApiException as error:
            return bool(error.status == 404)
        assert pod.metadata is not None
        return pod.metadata.deletion_timestamp is not None

    wait_for(gone_or_terminating, what="the evicted pod to go")
    wait_for(lambda: rolled_out(api_client, namespace), what="a replacement pod")
    wait_for(lambda: len(pods(api_client, namespace)) == 2, what="the evicted pod to be deleted")

    pdb = {"metadata": {"name": "web"}, "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}
    client.PolicyV1Api(api_client).create_namespaced_pod_disruption_budget(namespace, as_body(pdb))

    def budget_exhausted() -> bool:
        status = client.PolicyV1Api(api_client).read_namespaced_pod_disruption_budget("web", namespace).status
        return bool(status and status.observed_generation and status.current_healthy == 2)

    wait_for(budget_exhausted, what="the PDB to count 2 healthy pods")
    survivor = next(p for p in pods(api_client, namespace) if p.metadata.deletion_timestamp is None)
    held = write.call("delete_pod", namespace=namespace, name=survivor.metadata.name)
    assert not held["ok"] and "create_namespaced_pod_eviction failed: 429" in held["error"]
    kept = client.CoreV1Api(api_client).read_namespaced_pod(survivor.metadata.name, namespace)
    assert kept.metadata is not None and kept.metadata.deletion_timestamp is None

    make_deployment(api_client, namespace, name="other")
    other_pod = wait_for(lambda: pods(api_client, namespace, "app=other"), what="other pod")[0]
    refused = write.call("delete_pod", namespace=namespace, name=other_pod.metadata.name)
    assert refused["status"] == ToolStatus.REFUSED and not refused["ok"] and "does not belong" in refused["error"]
    assert refused["error"].startswith("refused by policy:")  # how the model reads it


def test_guard_refusals_leave_the_object_unchanged(api_client: client.ApiClient, namespace: str) -> None:
    make_deployment(api_client, namespace)
    make_deployment(api_client, namespace, name="payments")
    for name in ("web", "payments"):
        wait_for(lambda: rolled_out(api_client, namespace, name), what=f"{name} rollout")  # noqa: B023
    _, write = tools(api_client, namespace)
    before = {name: resource_version(api_client, namespace, name) for name in ("web", "payments")}
    attempts = [
        write.call("scale", namespace=namespace, name="web", replicas=0),
        write.call("scale", namespace=namespace, name="payments", replicas=2),
        write.call(
            "fix_probe",
            namespace=namespace,
            kind="Deployment",
            name="web",
            container="web",
            probe="liveness",
            period_seconds=5,
        ),
        write.call(
            "set_env",
            namespace=namespace,
            kind="Deployment",
            name="web",
            container="no-such-container",
            env_name="A",
            value="b",
        ),
        write.call(
            "set_resources", namespace=namespace, kind="Deployment", name="web", container="web", memory_limit="10Gi"
        ),
    ]
    for result in attempts:
        assert not result["ok"] and result["status"] == ToolStatus.REFUSED, result
        assert result["error"].startswith("refused by policy:"), result
    # an image this Deployment never ran is not applied: it becomes a proposal with the would-be diff
    proposed = write.call(
        "set_image", namespace=namespace, name="web", container="web", image="evil.example/miner:latest"
    )
    assert proposed["ok"] and proposed["data"]["status"] == "proposed", proposed
    assert "+containers[web].image: evil.example/miner:latest" in proposed["data"]["diff"]
    assert write.recorder[-1].status is ActionStatus.PROPOSED and "not applied" in write.recorder[-1].reason
    client.AppsV1Api(api_client).patch_namespaced_deployment(
        "web", namespace, {"metadata": {"labels": {"amos.io/protected": "true"}}}
    )
    before["web"] = resource_version(api_client, namespace)
    protected = write.call("restart_rollout", namespace=namespace, name="web")
    assert "is protected" in protected["error"]
    assert {name: resource_version(api_client, namespace, name) for name in before} == before
    assert deployment(api_client, namespace)["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD
    assert {r.status for r in write.recorder} == {ActionStatus.REFUSED, ActionStatus.PROPOSED}
    assert len(write.recorder) == len(attempts) + 2
    assert write.snapshots == {}


@pytest.fixture
def deny_96mi(api_client: client.ApiClient, namespace: str) -> Any:
    """A ValidatingAdmissionPolicy (as Gatekeeper or Kyverno would) that refuses a 96Mi memory limit here."""
    admission = client.AdmissionregistrationV1Api(api_client)
    name = f"deny-96mi-{namespace}"[:63]
    admission.create_validating_admission_policy(
        as_body(
            {
                "metadata": {"name": name},
                "spec": {
                    "failurePolicy": "Fail",
                    "matchConstraints": {
                        "resourceRules": [
                            {
                                "apiGroups": ["apps"],
                                "apiVersions": ["v1"],
                                "operations": ["UPDATE"],
                                "resources": ["deployments"],
                            }
                        ]
                    },
                    "validations": [
                        {
                            "expression": "object.spec.template.spec.containers.all(c, !has(c.resources.limits) "
                            "|| !('memory' in c.resources.limits) "
                            "|| string(c.resources.limits['memory']) != '96Mi')",
                            "message": "memory limit 96Mi is not allowed here",
                        }
                    ],
                },
            }
        )
    )
    admission.create_validating_admission_policy_binding(
        as_body(
            {
                "metadata": {"name": name},
                "spec": {
                    "policyName": name,
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                    },
                },
            }
        )
    )
    yield name
    admission.delete_validating_admission_policy_binding(name)
    admission.delete_validating_admission_policy(name)


def test_dry_run_rejection_is_reported_and_nothing_changes(
    api_client: client.ApiClient, namespace: str, deny_96mi: str
) -> None:
    make_deployment(api_client, namespace)
    wait_for(lambda: rolled_out(api_client, namespace), what="rollout")
    _, write = tools(api_client, namespace)
    before = deployment(api_client, namespace)["metadata"]["generation"]

    # within the guard's bound (2x the 64Mi limit), but the cluster's admission policy says no at the dry-run
    def policy_in_force() -> bool:  # a new policy reaches the API server's admission a moment after it is created
        patch = {
            "spec": {
                "template": {"spec": {"containers": [{"name": "web", "resources": {"limits": {"memory": "96Mi"}}}]}}
            }
        }
        try:
            client.AppsV1Api(api_client).patch_namespaced_deployment("web", namespace, as_body(patch), dry_run="All")
        except client.ApiException as error:
            return bool(error.status == 422)
        return False

    wait_for(policy_in_force, what="the admission policy to be in force")
    rejected = write.call(
        "set_resources", namespace=namespace, kind="Deployment", name="web", container="web", memory_limit="96Mi"
    )
    assert not rejected["ok"], rejected
    assert rejected["error"].startswith("dry-run of patch_namespaced_deployment failed: 422"), rejected["error"]
    assert "memory limit 96Mi is not allowed here" in rejected["error"]
    assert deployment(api_client, namespace)["metadata"]["generation"] == before
    assert write.recorder[-1].status is ActionStatus.FAILED and write.snapshots == {}


def test_settings_dry_run_validates_but_changes_nothing(api_client: client.ApiClient, namespace: str) -> None:
    make_deployment(api_client, namespace)
    wait_for(lambda: rolled_out(api_client, namespace), what="rollout")
    _, write = tools(api_client, namespace, dry_run=True)
    before = resource_version(api_client, namespace)
    result = write.call(
        "set_resources", namespace=namespace, kind="Deployment", name="web", container="web", memory_limit="96Mi"
    )
    assert result["ok"] and result["data"]["status"] == "dry_run"
    assert "+containers[web].resources.limits.memory: 96Mi" in result["data"]["diff"]
    assert resource_version(api_client, namespace) == before
    assert write.recorder[-1].status is ActionStatus.DRY_RUN and write.snapshots == {}


def test_a_concurrent_edit_is_a_conflict_not_overwritten(api_client: client.ApiClient, namespace: str) -> None:
    make_deployment(api_client, namespace)
    wait_for(lambda: rolled_out(api_client, namespace), what="rollout")
    _, write = tools(api_client, namespace)
    real_get = write.access.get
    edited: list[bool] = []

    def get_then_human_edits(kind: str, ns: str, name: str) -> dict[str, Any]:
        obj = real_get(kind, ns, name)
        if kind == "Deployment" and not edited:  # a person edits the spec right after AMOS read it
            client.AppsV1Api(api_client).patch_namespaced_deployment(
                "web",
                namespace,
                {"spec": {"template": {"spec": {"containers": [{"name": "web", "args": ["--human"]}]}}}},
            )
            edited.append(True)
        return obj

    write.access.get = get_then_human_edits  # type: ignore[method-assign,assignment]
    result = write.call(
        "set_resources", namespace=namespace, kind="Deployment", name="web", container="web", memory_limit="96Mi"
    )
    assert not result["ok"] and result["status"] == ToolStatus.CONFLICT, result
    assert "409" in result["error"]
    spec = deployment(api_client, namespace)["spec"]["template"]["spec"]["containers"][0]
    assert spec["args"] == ["--human"] and spec["resources"]["limits"]["memory"] == "64Mi"
    assert write.recorder[-1].status is ActionStatus.FAILED and "conflict" in write.recorder[-1].reason


def test_parallel_tool_calls_all_land(api_client: client.ApiClient, namespace: str) -> None:
    """One model turn asking for three changes at once: serialized, each on a fresh read, none lost."""
    make_deployment(api_client, namespace)
    wait_for(lambda: rolled_out(api_client, namespace), what="rollout")
    _, write = tools(api_client, namespace)
    changes = [{"memory_limit": "96Mi"}, {"cpu_limit": "300m"}, {"memory_request": "48Mi"}]
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(
                lambda change: write.call(
                    "set_resources", namespace=namespace, kind="Deployment", name="web", container="web", **change
                ),
                changes,
            )
        )
    assert all(result["ok"] and result["data"]["status"] == "applied" for result in results), results
    resources = deployment(api_client, namespace)["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"limits": {"memory": "96Mi", "cpu": "300m"}, "requests": {"memory": "48Mi", "cpu": "50m"}}
    assert [r.status for r in write.recorder] == [ActionStatus.APPLIED] * 3


# --- every revisioned kind, with AMOS's known-good history ---------------------------------------------------


@pytest.fixture
def known_good(api_client: client.ApiClient, namespace: str) -> Iterator[KnownGoodStore]:
    state = workloads.create_namespace(api_client, f"{namespace[:50]}-state")
    yield KnownGoodStore(ClusterAccess(api_client, Settings(state_namespace=state), Redactor()))
    client.CoreV1Api(api_client).delete_namespace(state, propagation_policy="Background")


def kind_tools(
    api_client: client.ApiClient, ref: ObjectRef, store: KnownGoodStore
) -> tuple[ClusterAccess, ReadTools, WriteTools]:
    access = ClusterAccess(api_client, Settings(), Redactor())
    scope = IncidentScope.of(ref)
    return (
        access,
        ReadTools(access, scope, known_good=store),
        WriteTools(access, PolicyGuard(access.settings, scope), known_good=store),
    )


def pod_template(app: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                    "resources": {"limits": {"memory": "64Mi"}},
                }
            ],
        },
    }


def patch_image(api_client: client.ApiClient, ref: ObjectRef, image: str) -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}
    apps = client.AppsV1Api(api_client)
    patch = apps.patch_namespaced_stateful_set if ref.kind == "StatefulSet" else apps.patch_namespaced_daemon_set
    patch(ref.name, ref.namespace, body)


def revisions(access: ClusterAccess, ref: ObjectRef) -> list[dict[str, Any]]:
    return access.controller_revisions_of(access.get(ref.kind, ref.namespace, ref.name))


def verified(access: ClusterAccess, ref: ObjectRef) -> None:
    obj = access.get(ref.kind, ref.namespace, ref.name)
    verdict = Judge(access, access.settings, stable_seconds=2).verify(Baseline.of(ref, obj))
    assert verdict.ok, verdict.text()


def test_statefulset_good_crash_bad_image_rolls_back_to_the_recorded_revision(
    api_client: client.ApiClient, namespace: str, known_good: KnownGoodStore
) -> None:
    ref = ObjectRef(kind="StatefulSet", namespace=namespace, name="db")
    access, read, write = kind_tools(api_client, ref, known_good)
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": pod_template("db", GOOD),
        },
    }
    client.AppsV1Api(api_client).create_namespaced_stateful_set(namespace, as_body(body))
    first = wait_for(lambda: revisions(access, ref), what="revision 1")[0]
    wait_for(
        lambda: (access.get("StatefulSet", namespace, "db").get("status") or {}).get("readyReplicas") == 2,
        what="2 ready replicas",
    )
    signal = HealthyRevision(
        workload=ref, revision=1, template_hash=first["metadata"]["name"], observed_at=datetime.now(UTC)
    )
    assert known_good.mark_good(signal) is not None
    patch_image(api_client, ref, CRASHING)
    wait_for(lambda: len(revisions(access, ref)) == 2, what="revision 2")
    assert known_good.mark_bad(ref, 2, note="CrashLoopBackOff") is not None
    patch_image(api_client, ref, "registry.local/shop/web:v1.6.0-missing")
    wait_for(lambda: len(revisions(access, ref)) == 3, what="revision 3")

    history = read.get_rollout_history(namespace, "db", kind="StatefulSet")
    assert history["ok"], history
    data = history["data"]
    by_number = {entry["revision"]: entry for entry in data["revisions"]}
    assert data["current_revision"] == 3 and by_number[3]["current"]
    assert by_number[1]["known_good"] == "recorded" and by_number[2]["known_bad"]
    assert data["rollback_target"]["revision"] == 1 and data["rollback_target"]["source"] == "recorded"
    assert by_number[2]["changes"] == [f"image of container web: {GOOD} -> {CRASHING}"]
    assert data["update_strategy"]["type"] == "RollingUpdate"

    described = read.describe(namespace, "statefulset", "db")["data"]
    assert described["status"]["updateRevision"] == by_number[3]["name"] and described["replicas"] == 2
    assert described["template"]["containers"][0]["image"] == "registry.local/shop/web:v1.6.0-missing"
    assert {p["name"] for p in read.list_pods(namespace, "StatefulSet", "db")["data"]["pods"]} == {"db-0", "db-1"}

    refused = write.call("rollback_deployment", namespace=namespace, name="db", to_revision=2, kind="StatefulSet")
    assert not refused["ok"] and refused["status"] == ToolStatus.REFUSED and "known-bad" in refused["error"], refused
    result = write.call("rollback_deployment", namespace=namespace, name="db", kind="sts")
    assert result["ok"] and result["data"]["status"] == "applied", result
    assert write.recorder[-1].summary == "roll back StatefulSet/db to revision 1"
    restored = access.get("StatefulSet", namespace, "db")
    assert restored["spec"]["template"] == objects.revision_template(first)
    assert restored["spec"]["replicas"] == 2
    verified(access, ref)


def test_daemonset_rollback_infers_the_revision_still_serving(
    api_client: client.ApiClient, namespace: str, known_good: KnownGoodStore
) -> None:
    ref = ObjectRef(kind="DaemonSet", namespace=namespace, name="agent")
    access, read, write = kind_tools(api_client, ref, known_good)
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": pod_template("agent", GOOD),
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
        },
    }
    client.AppsV1Api(api_client).create_namespaced_daemon_set(namespace, as_body(body))
    wait_for(
        lambda: (s := access.get("DaemonSet", namespace, "agent").get("status") or {}).get("numberReady") == 3 and s,
        what="3 ready pods",
    )
    patch_image(api_client, ref, CRASHING)
    wait_for(lambda: len(revisions(access, ref)) == 2, what="revision 2")
    history = wait_for(
        lambda: (
            (h := read.get_rollout_history(namespace, "agent", kind="DaemonSet")["data"])
            and h["rollback_target"]["revision"] == 1
            and h
        ),
        what="revision 1 inferred good",
    )
    assert history["rollback_target"]["source"] == "inferred"
    assert "Ready pod" in history["rollback_target"]["reason"]
    result = write.call("rollback_deployment", namespace=namespace, name="agent", kind="DaemonSet")
    assert result["ok"] and result["data"]["status"] == "applied", result
    assert access.get("DaemonSet", namespace, "agent")["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD
    verified(access, ref)


def test_cronjob_rolls_back_to_the_job_template_that_succeeded(
    api_client: client.ApiClient, namespace: str, known_good: KnownGoodStore
) -> None:
    ref = ObjectRef(kind="CronJob", namespace=namespace, name="nightly")
    access, read, write = kind_tools(api_client, ref, known_good)
    job_template = {
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "web", "image": GOOD, "env": [{"name": "MODE", "value": "nightly"}]}],
                }
            },
        }
    }
    body = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "* * * * *", "jobTemplate": job_template},
    }
    batch = client.BatchV1Api(api_client)
    batch.create_namespaced_cron_job(namespace, as_body(body))
    done = wait_for(
        lambda: [
            j
            for j in access.jobs_of(access.get("CronJob", namespace, "nightly"))
            if any(c.get("type") == "Complete" for c in (j.get("status") or {}).get("conditions") or [])
        ],
        timeout=150.0,
        what="a successful run",
    )[0]
    job_ref = ObjectRef(kind="Job", namespace=namespace, name=done["metadata"]["name"])
    signal = HealthyRevision(
        workload=ref, revision=None, template_hash="any", source=job_ref, observed_at=datetime.now(UTC)
    )
    record = known_good.mark_good(signal)
    assert record is not None and [t.job for t in record.templates] == [job_ref.name]
    good = access.get("CronJob", namespace, "nightly")["spec"]["jobTemplate"]
    broken = {
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {"containers": [{"name": "web", "image": "registry.local/shop/web:v1.6.0-missing"}]}
                    }
                }
            }
        }
    }
    batch.patch_namespaced_cron_job("nightly", namespace, broken)

    history = read.get_rollout_history(namespace, "nightly", kind="CronJob")["data"]
    assert [(e["revision"], e["current"], e["known_good"]) for e in history["revisions"]] == [
        (1, False, "recorded"),
        (None, True, None),
    ]
    assert history["rollback_target"]["revision"] == 1
    assert any("image of container web" in line for line in history["revisions"][1]["changes"])
    assert "nightly" not in str(history)[str(history).find("MODE") :][:40]  # env values are never shown
    described = read.describe(namespace, "CronJob", "nightly")["data"]
    assert described["schedule"] == "* * * * *" and described["status"]["lastSuccessfulTime"]
    result = write.call("rollback_deployment", namespace=namespace, name="nightly", kind="CronJob")
    assert result["ok"] and result["data"]["status"] == "applied", result
    assert access.get("CronJob", namespace, "nightly")["spec"]["jobTemplate"] == good


def test_the_guard_scales_from_the_effective_limit_a_limitrange_gave_the_pod(
    api_client: client.ApiClient, namespace: str
) -> None:
    """No limit in the template: the 64Mi default of the namespace's LimitRange is visible only on the pod."""
    limit_range = {
        "metadata": {"name": "defaults"},
        "spec": {
            "limits": [{"type": "Container", "default": {"memory": "64Mi"}, "defaultRequest": {"memory": "32Mi"}}]
        },
    }
    client.CoreV1Api(api_client).create_namespaced_limit_range(namespace, as_body(limit_range))
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, as_body(workloads.deployment("web", GOOD)))
    wait_for(lambda: workloads.rollout_complete(api_client, namespace, "web"), what="rollout")
    assert not deployment(api_client, namespace)["spec"]["template"]["spec"]["containers"][0].get("resources")
    _, write = tools(api_client, namespace)
    too_much = write.call(
        "set_resources", namespace=namespace, kind="Deployment", name="web", container="app", memory_limit="256Mi"
    )
    assert not too_much["ok"] and "64Mi" in too_much["error"], too_much
    result = write.call(
        "set_resources", namespace=namespace, kind="Deployment", name="web", container="app", memory_limit="96Mi"
    )
    assert result["ok"] and result["data"]["status"] == "applied", result
    container = deployment(api_client, namespace)["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "96Mi"
