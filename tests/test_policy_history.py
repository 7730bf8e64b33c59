"""WorkloadHistory: which revisions the guard trusts, and what values a container had in them."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tools.policy import ContainerResources, WorkloadHistory, effective_resources_of

NS = "shop"
UID = "uid-workload"
SELECTOR = {"matchLabels": {"app": "web"}}


def container(image: str, **extra: Any) -> dict[str, Any]:
    return {"name": "web", "image": image, **extra}


def template(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = init
    return {"metadata": {"labels": {"app": "web"}}, "spec": spec}


def workload(kind: str, image: str = "web:v3", revision: int | None = 3, **status: Any) -> dict[str, Any]:
    annotations = {"deployment.kubernetes.io/revision": str(revision)} if kind == "Deployment" and revision else {}
    spec: dict[str, Any] = {"selector": SELECTOR, "template": template(container(image))}
    if kind == "CronJob":
        spec = {"jobTemplate": {"spec": {"template": template(container(image))}}}
    return {
        "kind": kind,
        "metadata": {"name": "web", "namespace": NS, "uid": UID, "annotations": annotations},
        "spec": spec,
        "status": status,
    }


def owner(kind: str = "Deployment", uid: str = UID, controller: Any = True) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": kind, "name": "web", "uid": uid, "controller": controller}


def replicaset(revision: int, pod_template: dict[str, Any], **meta: Any) -> dict[str, Any]:
    rs_template = copy.deepcopy(pod_template)
    rs_template["metadata"]["labels"]["pod-template-hash"] = f"h{revision}"
    metadata = {
        "name": f"web-h{revision}",
        "namespace": NS,
        "uid": f"rs-{revision}",
        "labels": {"app": "web", "pod-template-hash": f"h{revision}"},
        "annotations": {"deployment.kubernetes.io/revision": str(revision)},
        "ownerReferences": [owner()],
    }
    metadata.update(meta)
    return {"kind": "ReplicaSet", "metadata": metadata, "spec": {"template": rs_template}}


def controller_revision(
    kind: str, revision: int, pod_template: dict[str, Any], patch_inside: bool = True
) -> dict[str, Any]:
    stored = copy.deepcopy(pod_template)
    data: dict[str, Any] = {"spec": {"template": stored}}
    if patch_inside:
        stored["$patch"] = "replace"  # where the StatefulSet and DaemonSet controllers put it
    else:
        data["spec"]["$patch"] = "replace"
    return {
        "kind": "ControllerRevision",
        "metadata": {"name": f"web-{revision}abc", "namespace": NS, "ownerReferences": [owner(kind)]},
        "revision": revision,
        "data": data,
    }


def deployment_history(**extra: Any) -> WorkloadHistory:
    return WorkloadHistory(
        workload=workload("Deployment"),
        replicasets=[
            replicaset(1, template(container("web:v1", args=["--port=80"]))),
            replicaset(2, template(container("web:v2-crash"))),
            replicaset(3, template(container("web:v3"))),
        ],
        **extra,
    )


# --- trust ---------------------------------------------------------------------------------------------


def test_only_replicasets_the_deployment_controls_count() -> None:
    good = replicaset(1, template(container("web:v1")))
    not_controller = replicaset(4, template(container("evil:1")), ownerReferences=[owner(controller=None)])
    controller_string = replicaset(5, template(container("evil:2")), ownerReferences=[owner(controller="true")])
    other_uid = replicaset(6, template(container("evil:3")), ownerReferences=[owner(uid="uid-other")])
    other_kind = replicaset(7, template(container("evil:4")), ownerReferences=[owner(kind="StatefulSet")])
    other_namespace = replicaset(8, template(container("evil:5")), namespace="billing")
    foreign_labels = replicaset(9, template(container("evil:6")))
    foreign_labels["spec"]["template"]["metadata"]["labels"]["app"] = "api"
    wrong_hash = replicaset(10, template(container("evil:7")))
    wrong_hash["metadata"]["labels"]["pod-template-hash"] = "other"
    history = WorkloadHistory(
        workload=workload("Deployment"),
        replicasets=[
            good,
            not_controller,
            controller_string,
            other_uid,
            other_kind,
            other_namespace,
            foreign_labels,
            wrong_hash,
        ],
    )
    assert sorted(history.revisions()) == [1]
    assert history.images("web") == {"web:v1"}
    assert [rs["metadata"]["name"] for rs in history.owned_replicasets()] == ["web-h1"]


def test_a_workload_without_a_selector_or_uid_trusts_nothing() -> None:
    no_selector = workload("Deployment")
    del no_selector["spec"]["selector"]
    rs = [replicaset(1, template(container("web:v1")))]
    assert WorkloadHistory(workload=no_selector, replicasets=rs).revisions() == {}
    no_uid = workload("Deployment")
    del no_uid["metadata"]["uid"]
    assert WorkloadHistory(workload=no_uid, replicasets=rs).revisions() == {}
    assert WorkloadHistory(replicasets=rs).revisions() == {}


def test_match_expressions_are_honoured() -> None:
    target = workload("Deployment")
    target["spec"]["selector"] = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]}
    inside = replicaset(1, template(container("web:v1")))
    outside = replicaset(2, template(container("web:v2")))
    outside["spec"]["template"]["metadata"]["labels"]["app"] = "api"
    assert sorted(WorkloadHistory(workload=target, replicasets=[inside, outside]).revisions()) == [1]


def test_two_objects_claiming_one_revision_are_both_distrusted() -> None:
    history = WorkloadHistory(
        workload=workload("Deployment"),
        replicasets=[replicaset(1, template(container("web:v1"))), replicaset(1, template(container("web:v1-b")))],
    )
    assert history.revisions() == {}


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
@pytest.mark.parametrize("patch_inside", [True, False])
def test_controller_revisions_hold_statefulset_and_daemonset_history(kind: str, patch_inside: bool) -> None:
    first = controller_revision(kind, 1, template(container("web:v1")), patch_inside)
    second = controller_revision(kind, 2, template(container("web:v3")), patch_inside)
    stranger = controller_revision(kind, 3, template(container("evil:1")), patch_inside)
    stranger["metadata"]["ownerReferences"] = [owner(kind, uid="uid-other")]
    as_text = controller_revision(kind, 4, template(container("web:v4")), patch_inside)
    as_text["data"] = json.dumps(as_text["data"])
    history = WorkloadHistory(workload=workload(kind), controller_revisions=[first, second, stranger, as_text])
    assert sorted(history.revisions()) == [1, 2, 4]
    assert history.images("web") == {"web:v1", "web:v3", "web:v4"}
    assert "$patch" not in history.template_for(1)
    assert history.template_for(1)["spec"]["containers"][0]["image"] == "web:v1"
    # the revision whose template equals the workload's is the current one
    assert history.current_revisions() == {2}
    assert history.default_rollback_revision() == 4
    # a Deployment's ReplicaSets say nothing about a StatefulSet, and the other way round
    assert WorkloadHistory(workload=workload(kind), replicasets=[replicaset(1, template())]).revisions() == {}
    deployment = WorkloadHistory(workload=workload("Deployment"), controller_revisions=[first])
    assert deployment.revisions() == {}


def test_statefulset_update_revision_is_current_when_the_status_is_of_this_spec() -> None:
    target = workload(
        "StatefulSet", image="web:v9", updateRevision="web-2abc", currentRevision="web-1abc", observedGeneration=5
    )
    target["metadata"]["generation"] = 5
    history = WorkloadHistory(
        workload=target,
        controller_revisions=[
            controller_revision("StatefulSet", 1, template(container("web:v1"))),
            controller_revision("StatefulSet", 2, template(container("web:v2"))),
        ],
    )
    assert history.current_revisions() == {2}
    assert history.default_rollback_revision() == 1  # status.currentRevision (old pods) is a fine target
    # a status still describing the previous spec names a revision that is no longer the current one
    target["metadata"]["generation"] = 6
    assert history.model_copy(update={"workload": target}).current_revisions() == set()


def test_cronjob_history_is_the_job_templates_amos_saw_succeed() -> None:
    good_v1 = {"spec": {"template": template(container("job:v1"))}}
    good_v2 = {"spec": {"backoffLimit": 2, "template": template(container("job:v2"))}}
    history = WorkloadHistory(
        workload=workload("CronJob", image="job:v3-bad"), known_good_job_templates=[good_v1, good_v2], known_bad={2}
    )
    assert sorted(history.revisions()) == [1, 2]
    assert history.images("web") == {"job:v1", "job:v2"}  # known_bad has no meaning for a CronJob
    assert history.template_for(2) == good_v2
    assert history.default_rollback_revision() == 2
    now_v2 = workload("CronJob")
    now_v2["spec"]["jobTemplate"] = copy.deepcopy(good_v2)
    assert history.model_copy(update={"workload": now_v2}).current_revisions() == {2}


# --- current, default target, known-good/bad ----------------------------------------------------------------


def test_current_and_default_rollback_target() -> None:
    history = deployment_history()
    assert history.current_revisions() == {3}
    assert history.default_rollback_revision() == 2
    assert history.model_copy(update={"known_bad": {2}}).default_rollback_revision() == 1
    assert history.model_copy(update={"known_good": {1}}).default_rollback_revision() == 1
    assert history.model_copy(update={"known_good": {3}}).default_rollback_revision() is None
    assert history.model_copy(update={"known_bad": {1, 2}}).default_rollback_revision() is None


def test_a_revision_with_the_current_template_is_current_whatever_its_number() -> None:
    """After `rollout undo` to 1, the workload's annotation says 4 but revision 1's template is what runs."""
    target = workload("Deployment", image="web:v1", revision=4)
    target["spec"]["template"]["spec"]["containers"][0]["args"] = ["--port=80"]
    history = deployment_history().model_copy(update={"workload": target})
    assert history.current_revisions() == {1, 4}


def test_rollback_template_drops_the_hash_label() -> None:
    written = deployment_history().template_for(1)
    assert written["metadata"]["labels"] == {"app": "web"}
    assert written["spec"]["containers"][0]["image"] == "web:v1"


# --- values per container ------------------------------------------------------------------------------------


def test_values_per_container_cover_app_init_and_sidecar_containers() -> None:
    sidecar = {"name": "proxy", "image": "envoy:1.30", "restartPolicy": "Always", "args": ["--config=/etc/e.yaml"]}
    migrate = {"name": "migrate", "image": "web:v1", "command": ["/migrate"], "env": [{"name": "STEP", "value": "1"}]}
    app = container(
        "web:v1",
        command=["/web"],
        args=["--port=80"],
        env=[
            {"name": "DB_HOST", "value": "db.shop.svc"},
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        ],
        livenessProbe={"httpGet": {"path": "/healthz", "port": 80}, "periodSeconds": 10},
    )
    later = container("web:v2", command=["/web"], args=["--port=8080"], env=[{"name": "DB_HOST", "value": "db2"}])
    history = WorkloadHistory(
        workload=workload("Deployment"),
        replicasets=[
            replicaset(1, template(app, init=[migrate, sidecar])),
            replicaset(2, template(later, init=[sidecar])),
        ],
    )
    web = history.container_history("web")
    assert web.images == {"web:v1", "web:v2"}
    assert web.commands == {("/web",)}
    assert web.args == {("--port=80",), ("--port=8080",)}
    assert web.runs == {(("/web",), ("--port=80",)), (("/web",), ("--port=8080",))}
    assert web.env == {"DB_HOST": {"db.shop.svc", "db2"}}  # a valueFrom is not a literal value
    assert web.probes["livenessProbe"][0]["httpGet"]["path"] == "/healthz"
    assert history.container_history("proxy").args == {("--config=/etc/e.yaml",)}
    assert history.container_history("migrate").env == {"STEP": {"1"}}
    assert not history.container_history("nobody").images


def test_known_bad_revisions_are_not_history_of_values() -> None:
    history = deployment_history(known_bad={2})
    assert history.images("web") == {"web:v1", "web:v3"}
    assert history.container_history("web").runs == {((), ("--port=80",)), ((), ())}


def test_effective_resources_come_from_the_admitted_pod() -> None:
    pod = {
        "kind": "Pod",
        "spec": {
            "initContainers": [{"name": "init", "resources": {"limits": {"memory": "32Mi"}}}],
            "containers": [{"name": "web", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "100m"}}}],
        },
    }
    found = effective_resources_of(pod)
    assert found == {
        "init": ContainerResources(limits={"memory": "32Mi"}),
        "web": ContainerResources(limits={"memory": "64Mi"}, requests={"cpu": "100m"}),
    }
    assert WorkloadHistory(effective_resources=found).effective_resources["web"].limits == {"memory": "64Mi"}
