"""The command line fails clearly on bad input, and the service's endpoints and logs are what operators need."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from core.logcontext import incident_scope
from lab.cluster import free_port
from service import health, logs
from service.metrics import Metrics

REPO = Path(__file__).resolve().parent.parent


def _amos(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "main.py", *args], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **(env or {})})


def test_help_lists_the_commands() -> None:
    result = _amos("--help")
    assert result.returncode == 0
    for command in ("run", "demo", "diagnose", "--dry-run"):
        assert command in result.stdout


def test_a_wrong_setting_stops_start_up_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("max_attempts: lots\n")
    result = _amos("--config", str(config), "run")
    assert result.returncode == 2
    assert "max_attempts" in result.stderr and "Traceback" not in result.stderr


def test_malformed_yaml_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("max_attempts: [1\n")
    result = _amos("--config", str(config), "run")
    assert result.returncode == 2 and "not valid YAML" in result.stderr and "Traceback" not in result.stderr


def test_missing_kubeconfig_is_a_clear_error(tmp_path: Path) -> None:
    result = _amos("run", env={"KUBECONFIG": str(tmp_path / "nope")})
    assert result.returncode == 3
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_unreachable_api_server_is_a_clear_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{free_port()}",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    result = _amos("run", env={"KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 3
    assert "unreachable" in result.stderr and "Traceback" not in result.stderr


def test_health_readiness_and_metrics_endpoints() -> None:
    metrics = Metrics()
    metrics.incidents.labels(kind="OOMKilled", outcome="fixed").inc()
    ready = {"value": False}
    port = free_port()
    server = health.serve(port, metrics, lambda: ready["value"], host="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    try:
        assert urllib.request.urlopen(f"{base}/healthz").status == 200
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{base}/readyz")
        assert not_ready.value.code == 503
        ready["value"] = True
        assert urllib.request.urlopen(f"{base}/readyz").status == 200
        body = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert 'amos_incidents_total{kind="OOMKilled",outcome="fixed"} 1.0' in body
        assert "amos_detection_latency_seconds_bucket" in body
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
