"""AMOS as deployed: under its least-privilege ServiceAccount, and as two replicas behind one Lease."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from core.report import IncidentReport, Outcome
from lab import build
from lab.cluster import LabCluster
from scenarios.catalog import SCENARIOS
from scenarios.run import Collector, amos_on, run_scenario, suite_settings
from service.app import AmosApp
from tests.manifests import as_body
from tests.service_accounts import token_client

pytestmark = pytest.mark.lab

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
BAD_IMAGE = next(s for s in SCENARIOS if s.name == "bad-image-rollout")


@pytest.fixture(scope="module")
def amos_service_account(lab: LabCluster, api_client: client.ApiClient) -> client.ApiClient:
    """An ApiClient authenticated as deploy/'s ServiceAccount, after applying deploy/'s RBAC with kubectl."""
    env = {**os.environ, "KUBECONFIG": str(lab.kubeconfig)}
    subprocess.run(
        [str(build.bin_dir() / "kubectl"), "apply", "-f", str(DEPLOY / "amos.yaml")],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    return token_client(api_client, "amos-system", "amos")


def test_fix_works_under_the_least_privilege_role(
    lab: LabCluster, api_client: client.ApiClient, amos_service_account: client.ApiClient
) -> None:
    collector = Collector()
    with amos_on(amos_service_account, suite_settings(lab.kubeconfig), collector):
        result = run_scenario(api_client, BAD_IMAGE, collector)
    assert result.outcome == Outcome.FIXED.value, result.notes
    assert result.outside_changes == []


def test_the_api_server_denies_what_the_role_does_not_grant(
    api_client: client.ApiClient, namespace: str, amos_service_account: client.ApiClient
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace, as_body({"metadata": {"name": "db"}, "stringData": {"password": "s3cret"}})
    )
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace,
        as_body(
            {
                "metadata": {"name": "web"},
                "spec": {
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{"name": "app", "image": "nginx"}]},
                    },
                },
            }
        ),
    )
    as_amos_core = client.CoreV1Api(amos_service_account)
    as_amos_apps = client.AppsV1Api(amos_service_account)
    forbidden: list[Callable[[], object]] = [
        lambda: as_amos_core.patch_namespaced_secret("db", namespace, {"stringData": {"password": "x"}}),
        lambda: as_amos_core.delete_namespaced_secret("db", namespace),
        lambda: as_amos_apps.delete_namespaced_deployment("web", namespace),
        lambda: as_amos_core.create_namespaced_config_map(namespace, as_body({"metadata": {"name": "x"}})),
        lambda: as_amos_core.delete_namespace(namespace),
        lambda: as_amos_core.delete_namespaced_pod("anything", namespace),
    ]
    for call in forbidden:
        with pytest.raises(ApiException) as raised:
            call()
        assert raised.value.status == 403
    # ...while what it needs is allowed
    allowed = as_amos_apps.read_namespaced_deployment("web", namespace)
    assert allowed.metadata is not None and allowed.metadata.name == "web"


def test_two_replicas_one_remediates(lab: LabCluster, api_client: client.ApiClient) -> None:
    settings = suite_settings(lab.kubeconfig).model_copy(
        update={"leader_election": True, "lease_name": "amos-leader-pair"}
    )
    collector_a, collector_b, both = Collector(), Collector(), Collector()

    def reporter(own: Collector) -> Callable[[IncidentReport], None]:
        """Each replica's reports go to its own collector and to the shared one."""

        def deliver(report: IncidentReport) -> None:
            own.report(report)
            both.report(report)

        return deliver

    apps = [
        AmosApp(settings, lab.api_client(), identity=who, on_report=reporter(own), serve_http=False)
        for who, own in (("replica-a", collector_a), ("replica-b", collector_b))
    ]
    for app in apps:
        app.start()
    try:
        for app in apps:
            assert app.watcher.wait_synced(30)
        result = run_scenario(api_client, BAD_IMAGE, both)
    finally:
        for app in apps:
            app.stop(grace_seconds=10)
    assert result.outcome == Outcome.FIXED.value, result.notes
    reporters = [bool(c.for_namespace(result.namespace)[1]) for c in (collector_a, collector_b)]
    assert sorted(reporters) == [False, True], "exactly one replica must remediate"
