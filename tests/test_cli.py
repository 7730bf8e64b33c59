"""The command line behaves like a cluster tool: flags anywhere, documented exit codes, one-line errors on
stderr, `diagnose` with kubectl's names; and the service's endpoints and logs are what operators need."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from core.logcontext import incident_scope
from lab.cluster import LabCluster, free_port
from lab.workloads import create, deployment, pods_of, rollout_complete, wait_for, waiting_reasons
from service import health, logs
from service.exitcodes import ExitCode
from service.metrics import Metrics

REPO = Path(__file__).resolve().parent.parent


def _amos(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **(env or {})},
    )


def _one_clean_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def _kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return path


# --- flags, version, usage errors ------------------------------------------------------------------


def test_help_lists_the_commands_and_the_exit_codes() -> None:
    result = _amos("--help")
    assert result.returncode == 0
    for word in ("run", "check", "diagnose", "demo", "--dry-run", "--version", "exit codes", "3 cluster unreachable"):
        assert word in result.stdout


def test_version_comes_from_the_package_metadata() -> None:
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = _amos("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"amos {expected}"


def test_global_flags_work_after_the_command(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("max_attempts: lots\n")
    for args in (("run", "--dry-run", "--config", str(config)), ("--dry-run", "run", "-v", "--config", str(config))):
        result = _amos(*args)
        assert result.returncode == ExitCode.USAGE, result.stderr
        assert "'max_attempts' in" in result.stderr  # the config was read: the flag was accepted after `run`


def test_a_flag_given_before_the_command_is_not_lost_after_it(tmp_path: Path) -> None:
    result = _amos("--kubeconfig", str(tmp_path / "nope"), "check", "-o", "json")
    assert result.returncode == ExitCode.USAGE and "does not exist" in _one_clean_line(result.stderr)


def test_an_unknown_flag_is_one_line_on_stderr_with_exit_2() -> None:
    result = _amos("run", "--bogus")
    assert result.returncode == ExitCode.USAGE
    assert "unrecognized arguments: --bogus" in _one_clean_line(result.stderr) and result.stdout == ""


# --- configuration and cluster errors ------------------------------------------------------------


def test_every_configuration_error_is_reported_at_once_naming_its_source(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("max_attempts: lots\nsmtp_port: 0\n")
    result = _amos("--config", str(config), "run", env={"AMOS_NAMESPACES": "shop,web", "AMOS_DRY_RUN": "maybe"})
    assert result.returncode == ExitCode.USAGE and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    assert any("'max_attempts' in" in line for line in lines)
    assert any("'smtp_port' in" in line for line in lines)
    assert any("AMOS_DRY_RUN" in line for line in lines)
    assert not any("AMOS_NAMESPACES" in line for line in lines)  # a comma-separated list is fine


def test_an_unknown_variable_is_warned_about_with_a_suggestion(tmp_path: Path) -> None:
    result = _amos("run", env={"AMOS_MAX_ATTEMPS": "3", "KUBECONFIG": str(tmp_path / "nope")})
    assert "unknown environment variable AMOS_MAX_ATTEMPS ignored (did you mean AMOS_MAX_ATTEMPTS?)" in result.stderr


def test_malformed_yaml_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("max_attempts: [1\n")
    result = _amos("--config", str(config), "run")
    assert result.returncode == ExitCode.USAGE and "not valid YAML" in _one_clean_line(result.stderr)


def test_a_missing_kubeconfig_is_a_configuration_error(tmp_path: Path) -> None:
    result = _amos("run", env={"KUBECONFIG": str(tmp_path / "nope")})
    assert result.returncode == ExitCode.USAGE and "does not exist" in _one_clean_line(result.stderr)


@pytest.mark.parametrize("text", ["apiVersion: v1\nclusters: [\n", "- a\n- b\n", "foo: bar\n"])
def test_an_invalid_kubeconfig_is_one_line_not_a_traceback(tmp_path: Path, text: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text)
    result = _amos("diagnose", "deploy/web", "--kubeconfig", str(kubeconfig))
    assert result.returncode == ExitCode.USAGE and "kube" in _one_clean_line(result.stderr).lower()


def test_an_unreachable_api_server_is_exit_3(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path, f"https://127.0.0.1:{free_port()}")
    for command in ("run", "check"):
        result = _amos(command, env={"KUBECONFIG": str(kubeconfig)})
        assert result.returncode == ExitCode.UNREACHABLE
        assert "unreachable" in _one_clean_line(result.stderr)


@pytest.mark.parametrize("target", [["web"], ["service/web"], ["deploy/"], ["deploy/web", "extra"], ["a/b/c"]])
def test_a_target_diagnose_cannot_read_is_a_usage_error(target: list[str]) -> None:
    result = _amos("diagnose", *target)
    assert result.returncode == ExitCode.USAGE and _one_clean_line(result.stderr).startswith("amos: ")


def test_kubectl_type_names_are_understood() -> None:
    from service.oneshot import parse_target

    assert parse_target(["deploy/web"]) == ("Deployment", "web")
    assert parse_target(["deployments/web"]) == ("Deployment", "web")
    assert parse_target(["deployment", "web"]) == ("Deployment", "web")
    assert parse_target(["sts/db"]) == ("StatefulSet", "db")
    assert parse_target(["statefulsets/db"]) == ("StatefulSet", "db")
    assert parse_target(["ds/x"]) == ("DaemonSet", "x")
    assert parse_target(["cj/x"]) == ("CronJob", "x")
    assert parse_target(["cronjobs/x"]) == ("CronJob", "x")
    assert parse_target(["job/x"]) == ("Job", "x")
    assert parse_target(["jobs/x"]) == ("Job", "x")
    assert parse_target(["pod/x"]) == ("Pod", "x")
    assert parse_target(["po/x"]) == ("Pod", "x")
    assert parse_target(["rs/x"]) == ("ReplicaSet", "x")


# --- diagnose on the lab -------------------------------------------------------------------------


@pytest.mark.lab
def test_diagnose_tells_not_found_from_healthy_from_faulty(
    lab: LabCluster, api_client: client.ApiClient, namespace: str
) -> None:
    env = {"KUBECONFIG": str(lab.kubeconfig)}
    create(api_client, namespace, deployment("web"))
    create(api_client, namespace, deployment("api", image="shop/api:1.0-missing"))
    wait_for(lambda: rollout_complete(api_client, namespace, "web"), what="web rolled out")
    wait_for(
        lambda: any(
            waiting_reasons(p) & {"ErrImagePull", "ImagePullBackOff"} for p in pods_of(api_client, namespace, "app=api")
        ),
        what="api failing",
    )

    typo = _amos("diagnose", "deploy/wbe", "-n", namespace, env=env)
    assert typo.returncode == ExitCode.USAGE
    assert _one_clean_line(typo.stderr) == f'amos: deployment "wbe" not found in namespace {namespace!r}'
    wrong_namespace = _amos("diagnose", "deploy/web", "-n", f"{namespace}-nope", env=env)
    assert wrong_namespace.returncode == ExitCode.USAGE and "namespace" in _one_clean_line(wrong_namespace.stderr)

    healthy = _amos("diagnose", "deployments/web", "-n", namespace, env=env)
    assert healthy.returncode == ExitCode.OK, healthy.stderr
    assert healthy.stdout.startswith("healthy: ")

    first = pods_of(api_client, namespace, "app=api")[0]
    assert first.metadata is not None
    pod = first.metadata.name
    faulty = _amos("diagnose", f"pod/{pod}", "-n", namespace, "-o", "json", env=env)
    assert faulty.returncode == ExitCode.FAULT, faulty.stderr
    result = json.loads(faulty.stdout)
    assert result["status"] == "fault"
    assert result["requested"] == {"kind": "Pod", "namespace": namespace, "name": pod}
    assert result["workload"] == {"kind": "Deployment", "namespace": namespace, "name": "api"}
    assert result["incidents"] and result["incidents"][0]["diagnosis"]["category"] == "bad_image"


# --- endpoints and logs --------------------------------------------------------------------------


def test_health_readiness_and_metrics_endpoints() -> None:
    metrics = Metrics()
    metrics.incidents.labels(kind="OOMKilled", outcome="fixed").inc()
    reasons = ["Pod watch (all namespaces): not listed yet"]
    port = free_port()
    server = health.serve(port, metrics, lambda: list(reasons), host="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    try:
        assert urllib.request.urlopen(f"{base}/healthz").status == 200
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{base}/readyz")
        assert not_ready.value.code == 503
        assert not_ready.value.read().decode() == "not ready\nPod watch (all namespaces): not listed yet\n"
        reasons.clear()
        assert urllib.request.urlopen(f"{base}/readyz").status == 200
        body = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert 'amos_incidents_total{kind="OOMKilled",outcome="fixed"} 1.0' in body
        assert "amos_detection_latency_seconds_bucket" in body
        openmetrics = urllib.request.Request(f"{base}/metrics", headers={"Accept": "application/openmetrics-text"})
        assert urllib.request.urlopen(openmetrics).read().decode().endswith("# EOF\n")
    finally:
        server.shutdown()


def test_json_logs_carry_the_incident_id(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(json_lines=True)
    try:
        with incident_scope("abc123"):
            logging.getLogger("amos.test").info("rolled back %s", "web")
        logging.getLogger("amos.test").info("idle")
    finally:
        logging.getLogger().handlers.clear()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert lines[0]["incident"] == "abc123" and lines[0]["message"] == "rolled back web"
    assert lines[1]["incident"] == "-"
