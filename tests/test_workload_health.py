"""Outage detection's two sources of workloads: the watch cache's views and the API's JSON read alike."""

from __future__ import annotations

from typing import Any

import pytest

from core.workload_health import WorkloadHealth
from monitors.trim import DaemonSetView, DeploymentView, JobView, StatefulSetView
from monitors.workload_cache import HealthView, WorkloadCache, health_of
from orchestrator.outage import namespace_health

VIEWS: dict[str, type[DeploymentView | StatefulSetView | DaemonSetView | JobView]] = {
    "Deployment": DeploymentView,
    "StatefulSet": StatefulSetView,
    "DaemonSet": DaemonSetView,
    "Job": JobView,
}


def api_object(
    kind: str,
    name: str,
    *,
    namespace: str = "shop",
    spec: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    owners: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": f"uid-{name}"}
    if owners:
        meta["ownerReferences"] = owners
    return {"kind": kind, "metadata": meta, "spec": spec or {}, "status": status or {}}


def view_of(obj: dict[str, Any]) -> HealthView:
    return VIEWS[obj["kind"]].from_api(obj)


STUCK = {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}
FAILED = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
CRON_OWNER = [{"kind": "CronJob", "name": "nightly", "uid": "c-1", "controller": True, "apiVersion": "batch/v1"}]

OBJECTS = [
    api_object("Deployment", "web", spec={"replicas": 2}, status={"readyReplicas": 2}),
    api_object("Deployment", "api", spec={"replicas": 3}, status={"readyReplicas": 1}),
    api_object("Deployment", "idle", spec={"replicas": 0}),
    api_object("Deployment", "default-replicas"),
    api_object("Deployment", "stuck", spec={"replicas": 1}, status={"readyReplicas": 1, **STUCK}),
    api_object("StatefulSet", "db", spec={"replicas": 3}, status={"readyReplicas": 3}),
    api_object("StatefulSet", "cache", spec={"replicas": 2}, status={"readyReplicas": 2, **STUCK}),
    api_object("DaemonSet", "agent", status={"desiredNumberScheduled": 3, "numberReady": 2}),
    api_object("DaemonSet", "nowhere", status={"desiredNumberScheduled": 0, "numberReady": 0}),
    api_object("Job", "migrate", status=FAILED),
    api_object("Job", "backfill", status={"conditions": [{"type": "Complete", "status": "True"}]}),
    api_object("Job", "nightly-1", status=FAILED, owners=CRON_OWNER),
]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda obj: f"{obj['kind']}/{obj['metadata']['name']}")
def test_a_view_reads_as_the_api_object_it_was_trimmed_from(obj: dict[str, Any]) -> None:
    assert health_of(view_of(obj)) == WorkloadHealth.from_api(obj)


def test_the_conversion_keeps_what_outage_detection_decides_on() -> None:
    health = {w.name: w for w in (WorkloadHealth.from_api(obj) for obj in OBJECTS)}
    assert (health["api"].desired, health["api"].ready) == (3, 1)
    assert health["default-replicas"].desired == 1
    assert health["stuck"].stuck and health["cache"].stuck and not health["web"].stuck
    assert (health["agent"].desired, health["agent"].ready) == (3, 2)
    assert health["migrate"].failed and not health["migrate"].owned
    assert health["nightly-1"].owned and not health["backfill"].failed


def test_the_cache_and_the_api_listing_give_the_same_namespace_health() -> None:
    cache = WorkloadCache()
    for kind in VIEWS:
        cache.replace(kind, None, [view_of(obj) for obj in OBJECTS if obj["kind"] == kind])
    faulty = ["Deployment/web", "CronJob/nightly"]
    from_api = namespace_health("shop", [WorkloadHealth.from_api(obj) for obj in OBJECTS], faulty)
    assert namespace_health("shop", cache.of("shop"), faulty) == from_api
    assert from_api.total == 10 and from_api.failing == [
        "CronJob/nightly",
        "DaemonSet/agent",
        "Deployment/api",
        "Deployment/default-replicas",
        "Deployment/stuck",
        "Deployment/web",
        "Job/migrate",
        "StatefulSet/cache",
    ]


def test_events_update_the_cache_and_a_list_replaces_only_its_kind_and_namespace() -> None:
    cache = WorkloadCache()
    web = api_object("Deployment", "web", spec={"replicas": 2}, status={"readyReplicas": 0})
    other = api_object("Deployment", "web", namespace="blog", spec={"replicas": 1})
    job = api_object("Job", "migrate", status=FAILED)
    cache.replace("Deployment", None, [view_of(web), view_of(other)])
    cache.note("ADDED", view_of(job))
    assert {(w.kind, w.name, w.ready) for w in cache.of("shop")} == {("Deployment", "web", 0), ("Job", "migrate", 0)}
    web["status"]["readyReplicas"] = 2
    cache.note("MODIFIED", view_of(web))
    assert next(w for w in cache.of("shop") if w.kind == "Deployment").ready == 2
    cache.replace("Deployment", "shop", [])
    assert [w.kind for w in cache.of("shop")] == ["Job"] and len(cache.of("blog")) == 1
    cache.note("DELETED", view_of(job))
    assert cache.of("shop") == () and cache.of("elsewhere") == ()
