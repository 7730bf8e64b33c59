"""`python main.py check` and the start-up preflight: permissions proven by the API server itself, the state
namespace, SMTP against a real local server, and the model probe against a local Gemini REST endpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from agents.testing import FakeGeminiServer, declared_tools, gemini_text
from core.config import Settings
from lab.cluster import LabCluster, free_port
from service.check import PERMISSIONS, Severity, check_model, check_permissions, check_smtp
from service.exitcodes import ExitCode
from tests.manifests import as_body
from tests.test_notifications import ServerFactory, smtp_server  # noqa: F401 - the fixture is used by name
from tools.read import ReadTools

REPO = Path(__file__).resolve().parent.parent


def _amos(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), **env},
    )


# --- the permission table ------------------------------------------------------------------------


def test_the_table_holds_every_permission_the_code_uses() -> None:
    granted = {(p.group, p.label.split(".")[0], verb) for p in PERMISSIONS for verb in p.verbs}
    needed = [("", "pods", v) for v in ("get", "list", "watch")] + [
        ("", "pods/log", "get"),
        ("", "pods/eviction", "create"),
    ]
    needed += [("", "events", "create"), ("", "events", "list"), ("", "configmaps", "get"), ("", "secrets", "get")]
    for resource in ("deployments", "statefulsets", "daemonsets"):
        needed += [("apps", resource, v) for v in ("get", "list", "watch", "patch", "update")]
    needed += [("apps", r, "list") for r in ("replicasets", "controllerrevisions")]
    needed += [("batch", r, v) for r in ("jobs", "cronjobs") for v in ("get", "list", "watch")]
    needed += [
        ("batch", "cronjobs", "patch"),
        ("coordination.k8s.io", "leases", "update"),
        ("", "configmaps", "create"),
        ("", "namespaces", "get"),
    ]
    assert [n for n in needed if n not in granted] == []


# --- SMTP ----------------------------------------------------------------------------------------


def smtp_settings(port: int, **values: Any) -> Settings:
    return Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        engineer_email="oncall@example.com",
        smtp_timeout_seconds=5,
        **values,
    )


def test_a_reachable_smtp_server_passes_and_a_test_mail_arrives(smtp_server: ServerFactory) -> None:  # noqa: F811
    recorder, port = smtp_server(credentials=("amos", "s3cret"))
    settings = smtp_settings(port, smtp_username="amos", smtp_password="s3cret")
    assert check_smtp(settings) == []
    assert recorder.accepted == []
    sent = check_smtp(settings, send_test_mail=True)
    assert [f.severity for f in sent] == [Severity.OK]
    assert len(recorder.accepted) == 1 and recorder.accepted[0].rcpt_tos == ["oncall@example.com"]


def test_a_wrong_password_is_fatal_and_never_shown(smtp_server: ServerFactory) -> None:  # noqa: F811
    _, port = smtp_server(credentials=("amos", "s3cret"))
    findings = check_smtp(smtp_settings(port, smtp_username="amos", smtp_password="wrong-pw"))
    assert [f.severity for f in findings] == [Severity.FATAL]
    assert "login as amos refused" in findings[0].message and "wrong-pw" not in findings[0].message


def test_starttls_against_a_plain_server_is_fatal(smtp_server: ServerFactory) -> None:  # noqa: F811
    _, port = smtp_server()
    findings = check_smtp(smtp_settings(port).model_copy(update={"smtp_security": "starttls"}))
    assert [f.severity for f in findings] == [Severity.FATAL]
    assert "does not offer STARTTLS" in findings[0].message and "AMOS_SMTP_SECURITY" in findings[0].message


def test_implicit_tls_against_a_plain_server_is_fatal(smtp_server: ServerFactory) -> None:  # noqa: F811
    _, port = smtp_server()
    findings = check_smtp(smtp_settings(port).model_copy(update={"smtp_security": "tls"}))
    assert [f.severity for f in findings] == [Severity.FATAL] and "TLS failed" in findings[0].message


def test_an_unreachable_smtp_server_is_a_warning() -> None:
    findings = check_smtp(smtp_settings(free_port()))
    assert [f.severity for f in findings] == [Severity.WARNING]
    assert "cannot reach the SMTP server" in findings[0].message


# --- the model -----------------------------------------------------------------------------------


def gemini_settings(base_url: str) -> Settings:
    return Settings(
        model_provider="gemini", google_api_key="test-key", gemini_base_url=base_url, model_timeout_seconds=20
    )


def test_offline_needs_no_probe() -> None:
    findings = check_model(Settings(), client.ApiClient())
    assert [(f.severity, f.message) for f in findings] == [(Severity.OK, "offline diagnoser (no model key set)")]


def test_the_model_probe_carries_every_tool_and_the_output_schema() -> None:
    with FakeGeminiServer({"diagnosis": [gemini_text("OK")]}) as server:
        findings = check_model(gemini_settings(server.base_url), client.ApiClient())
    assert [f.severity for f in findings] == [Severity.OK], findings
    assert len(server.requests) == 1
    _, body = server.requests[0]
    tools = declared_tools(body)
    read_tools = [f.__name__ for f in ReadTools.__new__(ReadTools).as_functions()]
    assert set(read_tools) < set(tools) and "set_model_response" in tools
    schema = json.dumps(body["tools"])
    assert "proposed_actions" in schema and "root_cause" in schema


class RejectingGemini(FakeGeminiServer):
    """Answers like the Gemini API does to a schema it cannot take."""

    def answer(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        self.requests.append(("?", body))
        message = 'Invalid JSON payload received. Unknown name "discriminator"'
        return 400, {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}


def test_a_request_the_provider_rejects_is_fatal_in_one_line() -> None:
    with RejectingGemini({}) as server:
        findings = check_model(gemini_settings(server.base_url), client.ApiClient())
    assert [f.severity for f in findings] == [Severity.FATAL]
    assert "rejected" in findings[0].message and "discriminator" in findings[0].message
    assert "\n" not in findings[0].message


def test_an_unreachable_model_is_a_warning() -> None:
    findings = check_model(gemini_settings(f"http://127.0.0.1:{free_port()}"), client.ApiClient())
    assert [f.severity for f in findings] == [Severity.WARNING] and "\n" not in findings[0].message


# --- on the lab: a good and a broken set-up --------------------------------------------------------


def token_kubeconfig(lab: LabCluster, api_client: client.ApiClient, namespace: str, path: Path) -> Path:
    """A kubeconfig for a ServiceAccount that may only read pods in `namespace`."""
    core, rbac = client.CoreV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_service_account(namespace, as_body({"metadata": {"name": "checker"}}))
    rbac.create_namespaced_role(
        namespace,
        as_body(
            {
                "metadata": {"name": "pods-only"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
            }
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        as_body(
            {
                "metadata": {"name": "pods-only"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pods-only"},
                "subjects": [{"kind": "ServiceAccount", "name": "checker", "namespace": namespace}],
            }
        ),
    )
    status = core.create_namespaced_service_account_token(
        "checker", namespace, as_body({"spec": {"expirationSeconds": 3600}})
    ).status
    assert status is not None
    token = status.token
    admin = yaml.safe_load(lab.kubeconfig.read_text())
    admin["users"] = [{"name": "lab-admin", "user": {"token": token}}]
    path.write_text(yaml.safe_dump(admin))
    return path


@pytest.mark.lab
def test_check_passes_with_the_admin_kubeconfig(lab: LabCluster, namespace: str) -> None:
    result = _amos(
        "check",
        env={"KUBECONFIG": str(lab.kubeconfig), "AMOS_NAMESPACES": namespace, "AMOS_STATE_NAMESPACE": namespace},
    )
    assert result.returncode == ExitCode.OK, result.stdout + result.stderr
    assert "fatal" not in result.stdout and "check passed: 0 fatal" in result.stderr


@pytest.mark.lab
def test_check_lists_every_missing_permission_of_a_small_role(
    lab: LabCluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = token_kubeconfig(lab, api_client, namespace, tmp_path / "kubeconfig")
    env = {"KUBECONFIG": str(kubeconfig), "AMOS_NAMESPACES": namespace}
    result = _amos("check", env=env)
    assert result.returncode == ExitCode.USAGE, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert (
        f"fatal: permission: cannot list deployments.apps in namespace {namespace} "
        "(needed to watch and diagnose deployments)" in lines
    )
    assert any(
        line.startswith(f"fatal: permission: cannot patch statefulsets.apps in namespace {namespace}") for line in lines
    )
    assert any(
        line.startswith("fatal: permission: cannot update leases.coordination.k8s.io in namespace amos-system")
        for line in lines
    )
    assert any(line.startswith("fatal: state: state namespace amos-system") for line in lines)
    assert any(line.startswith("warning: permission: cannot get secrets") for line in lines)
    assert not any("cannot list pods " in line or "cannot watch pods " in line for line in lines)  # granted
    assert len(lines) == len(set(lines))

    as_json = json.loads(_amos("check", "-o", "json", env=env).stdout)
    assert sum(f["severity"] == "fatal" for f in as_json["findings"]) == sum(
        line.startswith("fatal:") for line in lines
    )

    dry_run = _amos("check", "--dry-run", env=env)  # writes are not needed in dry-run: they are warnings then
    assert "fatal: permission: cannot patch deployments.apps" not in dry_run.stdout
    assert "warning: permission: cannot patch deployments.apps" in dry_run.stdout
    assert "fatal: permission: cannot list deployments.apps" in dry_run.stdout

    refused = _amos("run", env=env)
    assert refused.returncode == ExitCode.USAGE
    assert "not starting" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.lab
def test_permission_findings_come_from_the_api_server(
    lab: LabCluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    from service.kube import connect

    limited = connect(token_kubeconfig(lab, api_client, namespace, tmp_path / "kubeconfig"))
    settings = Settings(namespaces=[namespace])
    assert check_permissions(api_client, settings) == []
    missing = check_permissions(limited, settings)
    assert missing and all(f.area == "permission" for f in missing)
