"""Failed Kubernetes API calls on the lab's real API server, counted in /metrics by operation and status: a
ServiceAccount without any role gets 403 from every central place that calls the API (cluster access, the state
records' calls, the outbox, the watch streams, the lease), and a read of an object that is not there gets 404."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator

import pytest
from kubernetes import client

from core import api_errors
from core.config import Settings
from core.redaction import Redactor
from lab.cluster import free_port
from monitors.detector import FaultDetector
from monitors.watch import Watcher
from notifications.outbox_records import OutboxRecords, OutboxStoreError
from orchestrator.state_api import StoreError, call_json
from service import health
from service.api_error_log import ApiErrorLog
from service.leader import LeaderElector
from service.metrics import Metrics
from tests.manifests import as_body
from tests.service_accounts import token_client
from tools.cluster import ApiCallError, ClusterAccess

pytestmark = pytest.mark.lab


@pytest.fixture
def no_role(api_client: client.ApiClient, namespace: str) -> Iterator[client.ApiClient]:
    """An ApiClient authenticated as a ServiceAccount no role is bound to: the API server refuses it everything."""
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service_account(namespace, as_body({"metadata": {"name": "nobody"}}))
    with token_client(api_client, namespace, "nobody") as api:
        yield api


def exposed(metrics: Metrics) -> str:
    port = free_port()
    server = health.serve(port, metrics, list, host="127.0.0.1")
    try:
        return str(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
    finally:
        server.shutdown()


def test_every_central_call_site_counts_a_refused_call_once(
    no_role: client.ApiClient, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics()
    api_errors.attach(no_role, ApiErrorLog(metrics, Redactor()))
    settings = Settings(namespaces=[namespace], leader_election=True)
    access = ClusterAccess(no_role, settings, Redactor())
    core = client.CoreV1Api(no_role)

    with caplog.at_level(logging.INFO, logger="amos.kube"):
        with pytest.raises(ApiCallError):
            access.get("Deployment", namespace, "web")
        with pytest.raises(StoreError):
            call_json("read_namespaced_config_map", core.read_namespaced_config_map, "amos-journal", namespace)
        assert LeaderElector(no_role, namespace, "amos-leader", "replica-a").step() is False
        with pytest.raises(OutboxStoreError):
            OutboxRecords(no_role, namespace).everything()
        watcher = Watcher(settings, no_role, FaultDetector(settings, lambda incident: None))
        watcher.start()
        try:
            assert watcher.wait_synced(30)  # a forbidden stream counts as synced
        finally:
            watcher.stop()

    body = exposed(metrics)
    for operation in (
        "read_namespaced_deployment",
        "read_namespaced_config_map",
        "read_namespaced_lease",
        "list_namespaced_config_map",
        "list_namespaced_pod",
        "list_namespaced_deployment",
        "list_namespaced_event",
    ):
        assert f'amos_api_errors_total{{operation="{operation}",status="403"}}' in body, operation
    assert 'amos_api_errors_total{operation="read_namespaced_deployment",status="403"} 1.0' in body
    assert 'amos_api_errors_total{operation="list_namespaced_event",status="403"} 2.0' in body  # two Event streams
    lines = [r for r in caplog.records if r.name == "amos.kube"]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in lines)
    deployment_reads = [r.getMessage() for r in lines if "read_namespaced_deployment" in r.getMessage()]
    assert len(deployment_reads) == 1 and "403 Forbidden" in deployment_reads[0]


def test_a_read_of_an_object_that_is_not_there_counts_as_404(api_client: client.ApiClient, namespace: str) -> None:
    metrics = Metrics()
    with client.ApiClient(api_client.configuration) as api:
        api_errors.attach(api, ApiErrorLog(metrics, Redactor()))
        with pytest.raises(ApiCallError) as raised:
            ClusterAccess(api, Settings(namespaces=[namespace]), Redactor()).get("Deployment", namespace, "absent")
    assert raised.value.status == 404
    assert 'amos_api_errors_total{operation="read_namespaced_deployment",status="404"} 1.0' in exposed(metrics)
