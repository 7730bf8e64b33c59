"""The Helm chart on the lab: lint, server-side validation, install, and AMOS working under exactly its RBAC.

AMOS itself runs in this process (no image runs on the lab, whose kubelet fakes pods) with a token of the
chart's ServiceAccount, so every call it makes is authorised by the chart's Roles and nothing else. The
ServiceMonitor and PrometheusRule are checked against the pinned prometheus-operator CRDs by the API server,
and the alert rules by promtool; every metric an alert or the dashboard uses must be one AMOS exposes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from core.report import Outcome
from lab import build
from lab.cluster import LabCluster
from lab.workloads import create_namespace
from scenarios.catalog import SCENARIOS
from scenarios.run import Collector, amos_on, run_scenario, suite_settings
from service.check import check_permissions, check_state_namespace
from service.kube import connect
from service.metrics import Metrics
from tests.manifests import as_body

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "amos"
PLAIN_MANIFESTS = ROOT / "deploy" / "amos.yaml"
# deploy/amos.yaml is exactly this rendering (its header says so); the drift test below keeps them equal.
PLAIN_RENDER = ("template", "amos", str(CHART), "--namespace", "amos-system", "--set", "createNamespace=true")
PLAIN_HEADER = (
    "# Generated from the Helm chart; do not edit. Regenerate with:\n"
    "#   helm template amos deploy/helm/amos --namespace amos-system --set createNamespace=true > deploy/amos.yaml\n"
    "# Apply on a fresh cluster with: kubectl apply -f deploy/amos.yaml (the Namespace comes first).\n"
)
WIDE, SCOPED = "amos-wide", "amos-scoped"  # release = namespace; cluster objects are named after the release
MONITORING = ("--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true")
PROMETHEUS_SYNTHETIC = {"up"}  # series Prometheus itself writes for every scrape target
BAD_IMAGE = next(s for s in SCENARIOS if s.name == "bad-image-rollout")
STATEFULSET = next(s for s in SCENARIOS if s.name == "statefulset-bad-image")


# --- tools ------------------------------------------------------------------------------------------------


class Tools:
    """helm, promtool and kubectl from the lab's cache, against the lab as admin."""

    def __init__(self, lab: LabCluster, home: Path) -> None:
        self.bin = build.build(tools=True)
        self.crds = build.crd_dir()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(lab.kubeconfig),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, tool: str, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin / tool), *args],
            check=False,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if ok:
            assert result.returncode == 0, f"{tool} {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def helm(self, *args: str) -> str:
        return self.run("helm", *args).stdout

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        return self.run("kubectl", *args, stdin=stdin).stdout


@pytest.fixture(scope="module")
def tools(lab: LabCluster, tmp_path_factory: pytest.TempPathFactory) -> Tools:
    return Tools(lab, tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def crds(tools: Tools) -> None:
    """The pinned prometheus-operator CRDs for ServiceMonitor and PrometheusRule, established on the lab."""
    for name in build.PROMETHEUS_OPERATOR_CRDS:
        tools.kubectl("apply", "--server-side", "-f", str(tools.crds / name))
    tools.kubectl(
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/prometheusrules.monitoring.coreos.com",
    )


def _documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


class ServiceAccount(NamedTuple):
    """The chart's ServiceAccount: a kubeconfig holding a TokenRequest token, and an ApiClient made from it."""

    kubeconfig: Path
    api: client.ApiClient


@contextmanager
def _service_account(api_client: client.ApiClient, namespace: str, workdir: Path) -> Iterator[ServiceAccount]:
    token_request = client.CoreV1Api(api_client).create_namespaced_service_account_token(
        namespace, namespace, as_body({"spec": {"expirationSeconds": 3600}})
    )
    assert token_request.status is not None
    token = token_request.status.token
    admin = api_client.configuration
    kubeconfig = workdir / f"{namespace}.kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": namespace,
                "clusters": [
                    {"name": "lab", "cluster": {"server": admin.host, "certificate-authority": admin.ssl_ca_cert}}
                ],
                "users": [{"name": namespace, "user": {"token": token}}],
                "contexts": [
                    {"name": namespace, "context": {"cluster": "lab", "user": namespace, "namespace": namespace}}
                ],
            }
        )
    )
    with connect(kubeconfig) as api:
        yield ServiceAccount(kubeconfig, api)


@pytest.fixture(scope="module")
def cluster_wide(
    tools: Tools, crds: None, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceAccount]:
    """The chart installed cluster-wide with monitoring on, and its ServiceAccount."""
    tools.helm("install", WIDE, str(CHART), "--namespace", WIDE, "--create-namespace", *MONITORING)
    with _service_account(api_client, WIDE, tmp_path_factory.mktemp("sa")) as account:
        yield account


@pytest.fixture(scope="module")
def scoped(
    tools: Tools, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceAccount, str, str]]:
    """The chart installed for one namespace only; (its ServiceAccount, that namespace, another one)."""
    inside = create_namespace(api_client, "helm-inside")
    outside = create_namespace(api_client, "helm-outside")
    tools.helm(
        "install", SCOPED, str(CHART), "--namespace", SCOPED, "--create-namespace", "--set", f"namespaces={{{inside}}}"
    )
    with _service_account(api_client, SCOPED, tmp_path_factory.mktemp("sa")) as account:
        yield account, inside, outside


# --- the chart as text ------------------------------------------------------------------------------------


def test_the_chart_lints_clean_in_every_mode(tools: Tools) -> None:
    for values in ((), ("--set", "namespaces={shop,web}"), MONITORING, ("--set", "rbac.secrets.read=false")):
        assert "0 chart(s) failed" in tools.helm("lint", "--strict", str(CHART), *values)


def test_the_chart_refuses_values_that_cannot_work(tools: Tools) -> None:
    for values, message in (
        (("--set", "leaderElection=false"), "replicas > 1 needs leaderElection"),
        (("--set", "mode=yolo"), "mode must be auto, approve or observe"),
        (("--set", "namespaces={kube-system}"), "AMOS would act nowhere"),
        (("--set", "smtp.host=mail.example.com"), "smtp.engineerEmail"),
    ):
        result = tools.run("helm", "template", "amos", str(CHART), *values, ok=False)
        assert result.returncode != 0 and message in result.stderr, result.stderr


def test_the_plain_manifests_are_the_rendered_chart(tools: Tools) -> None:
    rendered = PLAIN_HEADER + tools.helm(*PLAIN_RENDER)
    assert PLAIN_MANIFESTS.read_text() == rendered, f"deploy/amos.yaml drifted from the chart: {PLAIN_HEADER}"
    kinds = [doc["kind"] for doc in _documents(rendered)]
    assert kinds[0] == "Namespace", kinds


def test_the_settings_configmap_is_read_without_a_warning(
    tools: Tools, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every AMOS_* key the chart writes is a setting AMOS knows and accepts, with every option on."""
    from core.config import load_config

    rendered = tools.helm(
        "template",
        "amos",
        str(CHART),
        "--set",
        "clusterName=prod",
        "--set",
        "namespaces={shop,web}",
        "--set",
        "smtp.host=mail.example.com",
        "--set",
        "smtp.engineerEmail=oncall@example.com",
        "--set",
        "allowedVerbs={rollback,restart}",
        "--set",
        "model.provider=openai",
        "--set",
        "model.openaiBaseUrl=http://ollama:11434/v1",
        "--set",
        "model.name=llama3",
        "--set",
        "extraSettings.verify_timeout_seconds=180",
    )
    config_map = next(d for d in _documents(rendered) if d["kind"] == "ConfigMap" and "amos.json" not in d["data"])
    for name in [n for n in os.environ if n.startswith("AMOS_")]:
        monkeypatch.delenv(name)
    for name, value in config_map["data"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AMOS_OPENAI_API_KEY", "from-the-secret")
    monkeypatch.chdir(tmp_path)  # no config.yaml: the variables alone
    loaded = load_config(None)
    settings = loaded.settings
    assert loaded.warnings == []
    assert (settings.namespaces, settings.cluster_name, settings.verify_timeout_seconds) == (
        ["shop", "web"],
        "prod",
        180,
    )
    assert [v.value for v in settings.allowed_verbs] == ["rollback", "restart"]


# --- on the lab -------------------------------------------------------------------------------------------


def test_the_rendered_chart_passes_server_side_validation(tools: Tools, crds: None, namespace: str) -> None:
    for values in ((), ("--set", f"namespaces={{{namespace}}}"), MONITORING):
        rendered = tools.helm("template", "dry", str(CHART), "--namespace", namespace, *values)
        tools.kubectl("apply", "--dry-run=server", "-f", "-", stdin=rendered)


def test_the_plain_manifests_apply_on_a_fresh_cluster(tools: Tools, api_client: client.ApiClient) -> None:
    tools.kubectl("apply", "-f", str(PLAIN_MANIFESTS))
    deployment = client.AppsV1Api(api_client).read_namespaced_deployment("amos", "amos-system")
    assert deployment.spec is not None and deployment.spec.template.spec is not None
    assert deployment.spec.template.spec.service_account_name == "amos"


def test_helm_install_creates_the_monitoring_objects_the_crds_accept(
    tools: Tools, cluster_wide: ServiceAccount, api_client: client.ApiClient
) -> None:
    custom = client.CustomObjectsApi(api_client)
    monitors: Any = custom.list_namespaced_custom_object("monitoring.coreos.com", "v1", WIDE, "servicemonitors")
    rules: Any = custom.list_namespaced_custom_object("monitoring.coreos.com", "v1", WIDE, "prometheusrules")
    assert [m["metadata"]["name"] for m in monitors["items"]] == [WIDE]
    assert [r["metadata"]["name"] for r in rules["items"]] == [WIDE]
    service = client.CoreV1Api(api_client).read_namespaced_service(WIDE, WIDE)
    assert service.metadata is not None and service.metadata.labels is not None
    assert monitors["items"][0]["spec"]["selector"]["matchLabels"].items() <= service.metadata.labels.items()


def test_the_cluster_wide_role_grants_every_permission_the_code_needs(cluster_wide: ServiceAccount) -> None:
    settings = suite_settings(cluster_wide.kubeconfig).model_copy(
        update={"own_namespace": WIDE, "leader_election": True}
    )
    assert check_permissions(cluster_wide.api, settings) == []
    assert check_state_namespace(cluster_wide.api, settings) == []


def test_amos_under_the_chart_role_fixes_a_bad_rollout_and_a_statefulset(
    api_client: client.ApiClient, cluster_wide: ServiceAccount
) -> None:
    settings = suite_settings(cluster_wide.kubeconfig).model_copy(
        update={"own_namespace": WIDE, "leader_election": True, "lease_name": "amos-helm-test"}
    )
    collector = Collector()
    with amos_on(cluster_wide.api, settings, collector) as app:
        results = [run_scenario(api_client, scenario, collector) for scenario in (BAD_IMAGE, STATEFULSET)]
        forbidden = app.watcher.forbidden_kinds
        exposed = generate_latest(app.metrics.registry).decode()
    for result in results:
        assert result.outcome == Outcome.FIXED.value, (result.name, result.notes)
        assert result.passed, (result.name, result.state_problems, result.notes)
        assert result.outside_changes == []
    assert forbidden == []
    assert not re.search(r'^amos_api_errors_total\{[^}]*status="403"', exposed, re.MULTILINE), exposed


def test_a_namespace_scoped_install_grants_its_namespace_and_nothing_else(
    scoped: tuple[ServiceAccount, str, str], api_client: client.ApiClient
) -> None:
    account, inside, outside = scoped
    api = account.api
    settings = suite_settings(account.kubeconfig).model_copy(
        update={"own_namespace": SCOPED, "namespaces": [inside], "leader_election": True}
    )
    assert check_permissions(api, settings) == []
    for target in (inside, outside):
        client.AppsV1Api(api_client).create_namespaced_deployment(target, as_body(_deployment("web")))
        client.CoreV1Api(api_client).create_namespaced_secret(
            target, as_body({"metadata": {"name": "db"}, "stringData": {"password": "s3cret"}})
        )
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    restart = {"spec": {"template": {"metadata": {"annotations": {"amos.io/restarted": "now"}}}}}
    # what a fix needs, inside
    apps.patch_namespaced_deployment("web", inside, restart, dry_run="All")
    secret_metadata = core.read_namespaced_secret("db", inside).metadata
    assert secret_metadata is not None and secret_metadata.name == "db"
    # denied by the API server: every write outside, any read outside, deletes and user ConfigMaps everywhere
    denied: dict[str, Callable[[], object]] = {
        "patch a Deployment outside": lambda: apps.patch_namespaced_deployment("web", outside, restart, dry_run="All"),
        "read a Deployment outside": lambda: apps.read_namespaced_deployment("web", outside),
        "read a Secret outside": lambda: core.read_namespaced_secret("db", outside),
        "list pods cluster-wide": lambda: core.list_pod_for_all_namespaces(limit=1),
        "evict outside": lambda: core.create_namespaced_pod_eviction(
            "x",
            outside,
            as_body({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "x", "namespace": outside}}),
        ),
        "delete a Deployment inside": lambda: apps.delete_namespaced_deployment("web", inside, dry_run="All"),
        "write a Secret inside": lambda: core.patch_namespaced_secret("db", inside, {"stringData": {"x": "y"}}),
        "create a ConfigMap inside": lambda: core.create_namespaced_config_map(
            inside, as_body({"metadata": {"name": "x"}})
        ),
        "delete a namespace": lambda: core.delete_namespace(outside, dry_run="All"),
    }
    allowed = []
    for what, call in denied.items():
        try:
            call()
            allowed.append(what)
        except ApiException as error:
            assert error.status == 403, (what, error.status, error.reason)
    assert allowed == []


def _deployment(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "shop/web:1.0"}]},
            },
        },
    }


# --- alerts and dashboard ---------------------------------------------------------------------------------


def _rendered_monitoring(tools: Tools) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the PrometheusRule's spec, the dashboard) as the chart renders them."""
    docs = _documents(tools.helm("template", WIDE, str(CHART), "--namespace", WIDE, *MONITORING))
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    dashboard = next(d for d in docs if d["kind"] == "ConfigMap" and "amos.json" in d.get("data", {}))
    return rule["spec"], json.loads(dashboard["data"]["amos.json"])


def test_promtool_accepts_the_alert_rules(tools: Tools, tmp_path: Path) -> None:
    spec, _ = _rendered_monitoring(tools)
    rules = tmp_path / "amos-rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": spec["groups"]}))
    assert "SUCCESS" in tools.run("promtool", "check", "rules", str(rules)).stdout


def test_the_alerts_fire_on_the_series_they_watch(tools: Tools, tmp_path: Path) -> None:
    """promtool's rule unit tests: the breaker alert fires on AMOS's own gauge, the down alert on a lost target."""
    spec, _ = _rendered_monitoring(tools)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": spec["groups"]}))
    target = f'namespace="{WIDE}", job="{WIDE}"'
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": f'amos_circuit_breaker_open{{{target}, pod="a"}}', "values": "0 1x10"},
                    {"series": f'up{{{target}, pod="a"}}', "values": "1 1 0x10"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "4m",
                        "alertname": "AmosCircuitBreakerOpen",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "namespace": WIDE},
                                "exp_annotations": {
                                    "summary": "The AMOS circuit breaker is open",
                                    "description": "Too many fixes failed; AMOS stops every change until a person closes the breaker.",
                                },
                            }
                        ],
                    },
                    {"eval_time": "4m", "alertname": "AmosDown", "exp_alerts": []},
                    {
                        "eval_time": "9m",
                        "alertname": "AmosDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "critical", "namespace": WIDE},
                                "exp_annotations": {
                                    "summary": "No AMOS replica is being scraped",
                                    "description": (
                                        "Failing workloads in this cluster are not detected or fixed while AMOS is down."
                                    ),
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    assert "SUCCESS" in tools.run("promtool", "test", "rules", str(tmp_path / "tests.yaml")).stdout


def _exposed_names() -> set[str]:
    """Every series name a fresh AMOS exposes, counters and histograms with their suffixes."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
        "info": ("_info",),
        "summary": ("_sum", "_count", "_created"),
    }
    families = text_string_to_metric_families(generate_latest(Metrics().registry).decode())
    return {family.name + suffix for family in families for suffix in suffixes.get(family.type, ("",))}


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(amos_[a-z0-9_]+|up)\b(?=\s*[{\[),])", expr))


def test_every_metric_an_alert_or_the_dashboard_uses_is_exposed(tools: Tools) -> None:
    spec, dashboard = _rendered_monitoring(tools)
    expressions = [rule["expr"] for group in spec["groups"] for rule in group["rules"]]
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [
        variable["query"]["query"]
        for variable in dashboard["templating"]["list"]
        if isinstance(variable.get("query"), dict)
    ]
    exposed = _exposed_names() | PROMETHEUS_SYNTHETIC
    unknown = {name for expr in expressions for name in _metric_names(expr)} - exposed
    assert unknown == set()
    used = [expr for expr in expressions if _metric_names(expr) or expr.startswith("vector(")]
    assert used == expressions  # every expression reads a series this test recognised
    assert "__AMOS_ACTIONS_PER_HOUR__" not in json.dumps(dashboard)
