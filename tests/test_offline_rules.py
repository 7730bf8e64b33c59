"""The offline diagnoser's rules for every fault class: known-good first, then the bounded fixes and escalations.

Pure: the inputs are tool results in the shapes `tools.read` returns; a revision carries the
known-good / known-bad mark get_rollout_history puts on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agents.offline import Facts, analyze, changes, config_step, history_call, verdict
from core.actions import Category, Diagnosis, Rollback, SetResources
from core.models import Evidence, FaultKind, Incident, ObjectRef

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ORDERS = ObjectRef(kind="Deployment", namespace="shop", name="orders")


def incident(kind: FaultKind, workload: ObjectRef = ORDERS, *evidence: Evidence, affected: Any = ()) -> Incident:
    return Incident(
        id="inc-1",
        fingerprint="f" * 16,
        kind=kind,
        workload=workload,
        first_seen=NOW,
        last_seen=NOW,
        evidence=list(evidence),
        affected=list(affected),
    )


def app(image: str = "shop/orders:1.0", name: str = "orders", **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **fields}


def rev(number: int, *containers: dict[str, Any], mark: str | None = None, current: bool = False) -> dict[str, Any]:
    revision: dict[str, Any] = {
        "revision": number,
        "replicaset": f"orders-hash{number}",
        "current": current,
        "containers": list(containers) or [app()],
    }
    if mark is not None:
        revision["known"] = mark
    return revision


def facts(*revisions: dict[str, Any], **more: Any) -> Facts:
    current = next((r for r in revisions if r["current"]), {})
    return Facts(
        workload={"kind": "Deployment", "name": "orders", "template": {"containers": current.get("containers", [])}},
        revisions=list(revisions),
        current_revision=current.get("revision"),
        **more,
    )


def run(fault: FaultKind, found: Facts, workload: ObjectRef = ORDERS, *evidence: Evidence, **kw: Any) -> Diagnosis:
    return analyze(incident(fault, workload, *evidence, **kw), workload, found, max_memory_factor=2.0)


def rollback_to(revision: int, workload: ObjectRef = ORDERS) -> list[Rollback]:
    return [Rollback(namespace=workload.namespace, name=workload.name, kind=workload.kind, to_revision=revision)]


def pulling(image: str, name: str = "orders", init: bool = False) -> dict[str, Any]:
    status = {"name": name, "image": image, "state": {"state": "waiting", "reason": "ImagePullBackOff"}}
    return {
        "kind": "Pod",
        "name": "orders-hash2-x",
        ("initContainerStatuses" if init else "containerStatuses"): [status],
    }


# --- known-good first ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("good", "bad", "pod", "fault"),
    [
        ([app()], [app("shop/orders:1.1-missing")], pulling("shop/orders:1.1-missing"), FaultKind.IMAGE_PULL),
        (
            [app(), app("envoy:1.30", "proxy")],
            [app(), app("envoy:1.31-notfound", "proxy")],
            pulling("envoy:1.31-notfound", "proxy"),
            FaultKind.IMAGE_PULL,
        ),
        (
            [app(), app("busybox:1.36", "migrate")],
            [app(), app("busybox:9-missing", "migrate")],
            pulling("busybox:9-missing", "migrate", init=True),
            FaultKind.INIT_CONTAINER,
        ),
    ],
    ids=["app", "sidecar", "init-container"],
)
def test_a_bad_image_in_any_container_rolls_back_to_the_known_good_revision(
    good: list[dict[str, Any]], bad: list[dict[str, Any]], pod: dict[str, Any], fault: FaultKind
) -> None:
    found = facts(rev(1, *good, mark="known-good (recorded)"), rev(2, *bad, current=True), pod=pod)
    diagnosis = run(fault, found)
    assert diagnosis.proposed_actions == rollback_to(1) and not diagnosis.escalate
    assert diagnosis.category is Category.BAD_IMAGE
    changed_container = next(c for c, b in zip(good, bad, strict=True) if c != b)["name"]
    assert f"the image of container {changed_container} changed from" in diagnosis.root_cause
    assert "known-good, recorded" in diagnosis.root_cause
    assert diagnosis.human_steps[0].startswith("Publish the intended image")


def test_back_to_back_bad_rollouts_restore_the_first_revision_not_the_crashing_one() -> None:
    found = facts(
        rev(1, app("shop/orders:1.0"), mark="known-good (recorded)"),
        rev(2, app("shop/orders:1.1-crash"), mark="known-bad"),
        rev(3, app("shop/orders:1.2-missing"), current=True),
        pod=pulling("shop/orders:1.2-missing"),
    )
    diagnosis = run(FaultKind.IMAGE_PULL, found)
    assert diagnosis.proposed_actions == rollback_to(1)
    assert any("known-bad revisions passed over: 2" in item for item in diagnosis.evidence)


def test_a_history_that_marks_nothing_good_has_no_target() -> None:
    unmarked = {"known_good": None, "known_bad": False}
    found = facts(rev(1) | unmarked, rev(2, app("shop/orders:2-missing"), current=True) | unmarked)
    found.pod = pulling("shop/orders:2-missing")
    diagnosis = run(FaultKind.IMAGE_PULL, found)
    assert diagnosis.escalate and "no earlier revision is known-good" in (diagnosis.escalation_reason or "")
    inferred = facts(rev(1) | {"known_good": "inferred"}, rev(2, app("shop/orders:2-missing"), current=True))
    assert run(FaultKind.IMAGE_PULL, inferred).proposed_actions == rollback_to(1)


def test_a_known_bad_revision_is_never_the_target_and_without_a_known_good_one_amos_escalates_saying_so() -> None:
    found = facts(
        rev(1, app("shop/orders:1.0-crash"), mark="known-bad"),
        rev(2, app("shop/orders:1.1-missing"), current=True),
        pod=pulling("shop/orders:1.1-missing"),
    )
    diagnosis = run(FaultKind.IMAGE_PULL, found)
    assert diagnosis.escalate and not diagnosis.proposed_actions
    assert "no earlier revision is known-good (known-bad: 1)" in (diagnosis.escalation_reason or "")


def test_a_fault_of_a_revision_that_was_healthy_is_not_undone_by_a_rollback() -> None:
    """The current revision ran fine before: the OOM comes from load, so the limit is raised instead."""
    limited = app(resources={"limits": {"memory": "128Mi"}})
    found = facts(rev(1, app("shop/orders:0.9"), mark="known-good"), rev(2, limited, mark="known-good", current=True))
    found.pod = {"kind": "Pod", "containerStatuses": [{"name": "orders", "lastState": {"reason": "OOMKilled"}}]}
    diagnosis = run(FaultKind.OOM_KILLED, found, ORDERS, Evidence(reason="OOMKilled", container="orders"))
    assert diagnosis.proposed_actions == [
        SetResources(namespace="shop", name="orders", kind="Deployment", container="orders", memory_limit="256Mi")
    ]


@pytest.mark.parametrize(
    ("reference", "missing", "step"),
    [
        (
            {"env_names": ["DATABASE_URL"]},
            "ConfigMap orders-config has no key database_url",
            "Create key database_url in ConfigMap orders-config, then roll Deployment/orders forward",
        ),
        (
            {"env_names": ["DB_PASSWORD"]},
            "Secret db-credentials not found",
            "Create Secret db-credentials in namespace shop, then roll Deployment/orders forward",
        ),
        (
            {"envFrom": [{"configMapRef": "orders-settings"}]},
            "ConfigMap orders-settings not found",
            "Create ConfigMap orders-settings in namespace shop, then roll Deployment/orders forward",
        ),
    ],
    ids=["configmap-key", "secret", "envfrom"],
)
def test_a_reference_to_missing_config_rolls_back_and_says_what_to_create(
    reference: dict[str, Any], missing: str, step: str
) -> None:
    found = facts(rev(1, mark="known-good (inferred)"), rev(2, app(**reference), current=True))
    found.config = {"refs": [], "missing": [missing]}
    diagnosis = run(FaultKind.CONTAINER_CONFIG, found)
    assert diagnosis.proposed_actions == rollback_to(1)
    assert diagnosis.category is Category.MISSING_CONFIG
    assert diagnosis.human_steps == [step]
    assert f"Missing: {missing}." in diagnosis.root_cause and "known-good, inferred" in diagnosis.root_cause


def test_a_command_change_that_crashes_rolls_back_as_bad_command() -> None:
    found = facts(
        rev(1, mark="known-good"),
        rev(2, app(command=["sh", "-c", "serve --bad-port"]), current=True),
        pods=[{"name": "orders-hash2-a", "restarts": 3, "reason": "CrashLoopBackOff", "revision_hash": "hash2"}],
        logs=["unknown flag: --bad-port"],
    )
    diagnosis = run(FaultKind.CRASH_LOOP, found)
    assert diagnosis.proposed_actions == rollback_to(1) and diagnosis.category is Category.BAD_COMMAND
    assert "command sh -c serve --bad-port added to container orders" in diagnosis.root_cause
    assert "unknown flag" in diagnosis.root_cause


CPU = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available."
QUOTA = (
    'pods "orders-hash2-x" is forbidden: exceeded quota: compute, requested: requests.memory=2Gi, '
    "used: requests.memory=64Mi, limited: requests.memory=1Gi"
)


@pytest.mark.parametrize(
    ("fault", "event", "message", "category"),
    [
        (FaultKind.UNSCHEDULABLE, "FailedScheduling", CPU, Category.UNSCHEDULABLE),
        (FaultKind.FAILED_CREATE, "FailedCreate", QUOTA, Category.QUOTA),
    ],
)
def test_a_request_past_capacity_or_quota_rolls_back_when_a_known_good_revision_exists(
    fault: FaultKind, event: str, message: str, category: Category
) -> None:
    big = app(resources={"requests": {"cpu": "500", "memory": "2Gi"}})
    found = facts(
        rev(1, app(resources={"requests": {"cpu": "100m"}}), mark="known-good"),
        rev(2, big, current=True),
        events=[{"reason": event, "message": message}],
    )
    diagnosis = run(fault, found)
    assert diagnosis.proposed_actions == rollback_to(1) and diagnosis.category is category
    assert message in diagnosis.root_cause
    assert "the resources of container orders changed from" in diagnosis.root_cause


@pytest.mark.parametrize(
    ("fault", "event", "message", "category"),
    [
        (FaultKind.UNSCHEDULABLE, "FailedScheduling", CPU, Category.UNSCHEDULABLE),
        (FaultKind.FAILED_CREATE, "FailedCreate", QUOTA, Category.QUOTA),
    ],
)
def test_without_a_known_good_revision_capacity_and_quota_escalate_with_the_message_and_the_request(
    fault: FaultKind, event: str, message: str, category: Category
) -> None:
    big = app(resources={"requests": {"cpu": "500", "memory": "2Gi"}})
    found = facts(rev(1, big, current=True), events=[{"reason": event, "message": message}])
    diagnosis = run(fault, found)
    assert diagnosis.escalate and diagnosis.category is category and not diagnosis.proposed_actions
    reason = diagnosis.escalation_reason or ""
    assert message in reason and "container orders: request cpu=500, request memory=2Gi" in reason


def test_a_limitrange_oom_raises_the_effective_limit_read_from_the_pod() -> None:
    found = facts(rev(1, app(), current=True))  # no limit in the template
    found.pod = {
        "kind": "Pod",
        "containers": [app(resources={"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}})],
        "containerStatuses": [{"name": "orders", "lastState": {"reason": "OOMKilled", "exitCode": 137}}],
    }
    diagnosis = run(FaultKind.OOM_KILLED, found, ORDERS, Evidence(reason="OOMKilled", container="orders"))
    assert diagnosis.proposed_actions == [
        SetResources(namespace="shop", name="orders", kind="Deployment", container="orders", memory_limit="128Mi")
    ]
    assert "LimitRange default" in diagnosis.root_cause and "no memory limit" not in diagnosis.root_cause


def test_an_oom_of_a_workload_describe_cannot_show_reads_the_limit_from_the_current_revision() -> None:
    db = ObjectRef(kind="StatefulSet", namespace="shop", name="orders")
    found = facts(rev(1, app(resources={"limits": {"memory": "100Mi"}}), mark="known-good", current=True))
    found.workload = None  # describe refused the kind
    found.pod = {"kind": "Pod", "containerStatuses": [{"name": "orders", "lastState": {"reason": "OOMKilled"}}]}
    diagnosis = run(FaultKind.OOM_KILLED, found, db)
    assert diagnosis.proposed_actions == [
        SetResources(namespace="shop", name="orders", kind="StatefulSet", container="orders", memory_limit="200Mi")
    ]


def test_a_lowered_limit_that_came_with_a_rollout_is_rolled_back_as_oom() -> None:
    found = facts(
        rev(1, app(resources={"limits": {"memory": "256Mi"}}), mark="known-good"),
        rev(2, app(resources={"limits": {"memory": "160Mi"}}), current=True),
    )
    found.pod = {"kind": "Pod", "containerStatuses": [{"name": "orders", "lastState": {"reason": "OOMKilled"}}]}
    diagnosis = run(FaultKind.OOM_KILLED, found)
    assert diagnosis.proposed_actions == rollback_to(1) and diagnosis.category is Category.OOM


@pytest.mark.parametrize("fault", [FaultKind.LIVENESS_FAILED, FaultKind.NOT_READY])
def test_a_probe_that_came_with_a_rollout_rolls_back_and_without_history_escalates(fault: FaultKind) -> None:
    probe = {"httpGet": {"path": "/wrong", "port": 8080}}
    field = "livenessProbe" if fault is FaultKind.LIVENESS_FAILED else "readinessProbe"
    probed: dict[str, Any] = {field: probe}
    unhealthy = [{"reason": "Unhealthy", "message": "Liveness probe failed: HTTP probe failed with statuscode: 404"}]
    found = facts(rev(1, mark="known-good"), rev(2, app(**probed), current=True), events=unhealthy)
    diagnosis = run(fault, found)
    assert diagnosis.proposed_actions == rollback_to(1) and diagnosis.category is Category.PROBE
    assert "probe" in diagnosis.human_steps[0]
    alone = run(fault, facts(rev(1, app(**probed), current=True), events=unhealthy))
    assert alone.escalate and "statuscode: 404" in (alone.escalation_reason or "")


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet", "CronJob"])
def test_every_kind_with_history_is_rolled_back_by_its_own_kind(kind: str) -> None:
    workload = ObjectRef(kind=kind, namespace="shop", name="orders")
    found = facts(rev(1, mark="known-good"), rev(2, app("shop/orders:2-crash"), current=True), logs=["Traceback"])
    found.workload = {"kind": kind, "name": "orders"}
    fault = FaultKind.JOB_FAILED if kind == "CronJob" else FaultKind.CRASH_LOOP
    diagnosis = run(fault, found, workload)
    assert diagnosis.proposed_actions == rollback_to(1, workload)
    assert f"then roll {kind}/orders forward" in diagnosis.human_steps[0]


def test_the_tools_rollback_target_is_taken_and_its_reason_reported() -> None:
    found = facts(
        rev(1, app("shop/orders:0.9"), mark="known-good"),
        rev(2, app("shop/orders:1.0"), mark="known-good"),
        rev(3, app("shop/orders:1.1-missing"), current=True),
        pod=pulling("shop/orders:1.1-missing"),
        rollback_target={"revision": 1, "source": "recorded", "reason": "revision 1 was seen healthy (recorded)"},
    )
    diagnosis = run(FaultKind.IMAGE_PULL, found)
    assert diagnosis.proposed_actions == rollback_to(1)
    assert any("revision 1 was seen healthy (recorded)" in item for item in diagnosis.evidence)
    none = facts(
        rev(1, app("shop/orders:0.9")),
        rev(2, app("shop/orders:1.1-missing"), current=True),
        rollback_target={
            "revision": None,
            "reason": "no known-good revision to roll back to: every earlier one failed",
        },
    )
    refused = run(FaultKind.IMAGE_PULL, none)
    assert refused.escalate and "every earlier one failed" in (refused.escalation_reason or "")


def test_a_cronjob_whose_current_template_was_never_seen_succeeding_returns_to_the_last_good_one() -> None:
    cron = ObjectRef(kind="CronJob", namespace="shop", name="report")
    current = {
        "revision": None,
        "name": "current job template",
        "current": True,
        "known_good": None,
        "containers": [app(env_names=["LAB_EXIT_CODE"])],
    }
    found = facts(rev(1, mark="known-good (recorded)"), rev(2, app("shop/orders:1.1"), mark="known-good"))
    found.revisions.append(current)
    found.current_revision = None
    found.workload = {"kind": "CronJob", "name": "report"}
    diagnosis = run(FaultKind.JOB_FAILED, found, cron)
    assert diagnosis.proposed_actions == rollback_to(2, cron)
    assert "started with the current job template (" in diagnosis.root_cause
    assert "env LAB_EXIT_CODE added to container orders" in diagnosis.root_cause


def test_a_failing_cronjob_without_a_good_template_escalates_counting_its_runs() -> None:
    cron = ObjectRef(kind="CronJob", namespace="shop", name="report")
    jobs = [{"name": f"report-{n}", "conditions": [{"type": "Failed", "status": "True"}]} for n in range(3)]
    found = facts(rev(1, current=True), jobs=jobs, logs=["exiting with status 3"])
    diagnosis = run(FaultKind.JOB_FAILED, found, cron)
    assert diagnosis.escalate and diagnosis.category is Category.JOB_FAILURE
    assert "its last 3 run(s) failed" in diagnosis.root_cause and "exiting with status 3" in diagnosis.root_cause


def test_a_bare_pod_escalates_with_its_log() -> None:
    pod = ObjectRef(kind="Pod", namespace="shop", name="debug")
    found = Facts(
        workload={"kind": "Pod", "name": "debug", "containers": [app()]},
        pod={"kind": "Pod", "containerStatuses": [{"name": "orders", "state": {"reason": "CrashLoopBackOff"}}]},
        logs=["connecting to db.shop.invalid\nno such host; connection refused"],
    )
    diagnosis = run(FaultKind.CRASH_LOOP, found, pod)
    assert diagnosis.escalate and not diagnosis.proposed_actions
    assert "no such host" in diagnosis.root_cause and diagnosis.category is Category.BAD_ENV
    assert "(no log lines could be read)" not in diagnosis.root_cause


# --- the helpers -----------------------------------------------------------------------------------


def test_revision_marks_are_read_whatever_their_spelling() -> None:
    assert verdict({"known": "known-good (recorded)"}) == "good"
    assert verdict({"health": "known-bad"}) == "bad"
    assert verdict({"known_good": True}) == "good"
    assert verdict({"known_good": "inferred", "known_bad": False}) == "good"
    assert verdict({"known_good": None, "known_bad": False}) is None
    assert verdict({"state": "current"}) is None


def test_what_a_revision_changed_reads_as_a_sentence() -> None:
    old = {"containers": [app(env_names=["A"]), app("envoy:1", "proxy")], "nodeSelector": None}
    new = {"containers": [app("shop/orders:2", env_names=["A", "B"])], "nodeSelector": {"disk": "ssd"}}
    assert changes(old, new) == [
        "the image of container orders changed from shop/orders:1.0 to shop/orders:2",
        "env B added to container orders",
        "container proxy removed",
        'the pod\'s node selector set to {"disk": "ssd"}',
    ]


def test_resources_envfrom_and_probes_read_as_words() -> None:
    old = {
        "containers": [
            app(
                resources={"limits": {"memory": "256Mi"}}, livenessProbe={"httpGet": {"path": "/healthz", "port": 8080}}
            )
        ]
    }
    new = {
        "containers": [
            app(
                resources={"limits": {"memory": "160Mi"}, "requests": {"memory": "160Mi"}},
                livenessProbe={"httpGet": {"path": "/deep", "port": 8080}},
                envFrom=[{"configMapRef": "orders-settings"}, {"secretRef": {"name": "orders-db"}}],
            )
        ]
    }
    assert changes(old, new) == [
        "envFrom ConfigMap orders-settings, Secret orders-db added to container orders",
        "the resources of container orders changed from limits memory=256Mi to requests memory=160Mi, limits memory=160Mi",
        "the liveness probe of container orders changed from httpGet /healthz on port 8080 to httpGet /deep on port 8080",
    ]


def test_config_steps_name_the_object_and_the_key() -> None:
    assert config_step("ConfigMap a has no key x, y", "shop") == "create keys x and y in ConfigMap a"
    assert config_step("Secret s not found", "shop") == "create Secret s in namespace shop"


def test_the_history_call_follows_the_tools_signature() -> None:
    class Tool:
        def __init__(self, func: Any) -> None:
            self.func = func

    def by_kind(namespace: str, kind: str, name: str) -> None: ...

    def by_deployment(namespace: str, deployment: str) -> None: ...

    new = history_call({"get_rollout_history": Tool(by_kind)}, "shop", "StatefulSet", "db")
    assert new is not None and new.function_call is not None
    assert new.function_call.args == {"namespace": "shop", "kind": "StatefulSet", "name": "db"}

    def by_deployment_and_kind(namespace: str, deployment: str, kind: str = "Deployment") -> None: ...

    both = history_call({"get_rollout_history": Tool(by_deployment_and_kind)}, "shop", "DaemonSet", "agent")
    assert both is not None and both.function_call is not None
    assert both.function_call.args == {"namespace": "shop", "deployment": "agent", "kind": "DaemonSet"}
    old = {"get_rollout_history": Tool(by_deployment)}
    assert history_call(old, "shop", "StatefulSet", "db") is None
    legacy = history_call(old, "shop", "Deployment", "web")
    assert legacy is not None and legacy.function_call is not None
    assert legacy.function_call.args == {"namespace": "shop", "deployment": "web"}
