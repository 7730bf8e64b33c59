"""The lab's pure program rules: what a container does, and what it answers to probes, from its spec alone."""

from __future__ import annotations

from typing import Any

import pytest

from lab.programs import HEALTH_PATHS, Fate, Role, answer_probe, decide

POD_IP = "10.244.0.7"


def _all_exist(kind: str, name: str, key: str | None) -> bool:
    return True


def _container(**fields: Any) -> dict[str, Any]:
    return {"name": "app", "image": "shop/api:2.0", **fields}


@pytest.mark.parametrize(
    ("role", "ends_by_itself", "last_line"),
    [
        (Role.SERVICE, False, "ready"),
        (Role.BATCH, True, "done: 1200 records processed"),
        (Role.INIT, True, "init done"),
    ],
)
def test_a_healthy_program_ends_by_itself_only_when_its_role_completes(
    role: Role, ends_by_itself: bool, last_line: str
) -> None:
    behaviour = decide(_container(), role=role, exists=_all_exist)
    assert behaviour.fate is Fate.RUNS
    assert (behaviour.run_seconds is not None) is ends_by_itself
    assert behaviour.log_lines[-1] == last_line


@pytest.mark.parametrize(
    ("fields", "fate", "exit_code"),
    [
        ({"image": "shop/init:1.0-missing"}, Fate.PULL_FAILS, 0),
        ({"image": "shop/init:1.0-crash"}, Fate.CRASHES, 1),
        ({"args": ["--bad-flag"]}, Fate.CRASHES, 2),
        ({"env": [{"name": "LAB_EXIT_CODE", "value": "4"}]}, Fate.CRASHES, 4),
    ],
    ids=["missing-tag", "crash-tag", "bad-args", "exit-code"],
)
def test_init_containers_follow_the_same_fate_rules(fields: dict[str, Any], fate: Fate, exit_code: int) -> None:
    behaviour = decide(_container(**fields), role=Role.INIT, exists=_all_exist)
    assert (behaviour.fate, behaviour.exit_code) == (fate, exit_code)


def test_the_memory_rule_reads_the_limit_in_the_admitted_spec() -> None:
    container = _container(env=[{"name": "LAB_MEMORY_MI", "value": "300"}], resources={"limits": {"memory": "256Mi"}})
    assert decide(container, role=Role.SERVICE, exists=_all_exist).fate is Fate.OOM
    container["resources"]["limits"]["memory"] = "512Mi"
    assert decide(container, role=Role.SERVICE, exists=_all_exist).fate is Fate.RUNS


PORTS = [{"containerPort": 8080, "name": "http"}, {"containerPort": 9090, "name": "grpc"}]


@pytest.mark.parametrize("path", sorted(HEALTH_PATHS))
def test_http_probe_on_a_declared_port_and_a_health_path_succeeds(path: str) -> None:
    for port in (8080, "http"):
        probe = {"httpGet": {"path": path, "port": port}}
        assert answer_probe(probe, _container(ports=PORTS), POD_IP).ok


def test_http_probe_on_an_unknown_path_gets_404() -> None:
    answer = answer_probe({"httpGet": {"path": "/status/deep", "port": 8080}}, _container(ports=PORTS), POD_IP)
    assert not answer.ok and answer.output == "HTTP probe failed with statuscode: 404"


def test_http_probe_on_an_undeclared_port_is_refused_like_a_kubelet_says() -> None:
    answer = answer_probe({"httpGet": {"path": "/healthz", "port": 8081}}, _container(ports=PORTS), POD_IP)
    assert not answer.ok and not answer.errored
    assert answer.output == (
        'Get "http://10.244.0.7:8081/healthz": dial tcp 10.244.0.7:8081: connect: connection refused'
    )


def test_a_container_without_ports_listens_nowhere() -> None:
    assert not answer_probe({"httpGet": {"path": "/healthz", "port": 8080}}, _container(), POD_IP).ok


def test_probe_on_an_undeclared_named_port_errors() -> None:
    answer = answer_probe({"httpGet": {"path": "/healthz", "port": "metrics"}}, _container(ports=PORTS), POD_IP)
    assert answer.errored and not answer.ok and "couldn't find port: metrics" in answer.output


def test_tcp_probe_succeeds_only_on_a_declared_port() -> None:
    container = _container(ports=PORTS)
    assert answer_probe({"tcpSocket": {"port": "grpc"}}, container, POD_IP).ok
    refused = answer_probe({"tcpSocket": {"port": 5432}}, container, POD_IP)
    assert not refused.ok and refused.output == "dial tcp 10.244.0.7:5432: connect: connection refused"


def test_grpc_probe_needs_a_declared_port_and_exec_always_succeeds() -> None:
    container = _container(ports=PORTS)
    assert answer_probe({"grpc": {"port": 9090}}, container, POD_IP).ok
    assert "failed to connect service" in answer_probe({"grpc": {"port": 9091}}, container, POD_IP).output
    assert answer_probe({"exec": {"command": ["cat", "/tmp/healthy"]}}, container, POD_IP).ok
