"""A small lab run of the load benchmark: every incident AMOS opens on the broken Deployments is concluded."""

from __future__ import annotations

import pytest
from kubernetes import client

from benchmarks.load import LoadConfig, print_result, reset_breaker, run_load, run_settings
from lab.cluster import LabCluster

pytestmark = pytest.mark.lab


def test_load_smoke_run_concludes_every_incident(lab: LabCluster, api_client: client.ApiClient) -> None:
    settings = run_settings(
        lab.kubeconfig, storm_min=10, excluded=[], pending_grace_seconds=5.0, unavailable_grace_seconds=30.0
    )
    reset_breaker(api_client, settings.store_namespace)
    config = LoadConfig(deployments=4, namespaces=2, bystanders=3, settle_seconds=0.0, timeout_seconds=480.0)
    result = run_load(api_client, settings, config, "smoke")
    print_result(result)
    assert {t.fault.restorable for t in result.targets} == {True, False}
    assert result.conclusions.workloads_without_incident() == []
    assert result.conclusions.unconcluded() == []
    assert result.conclusions.mttr_fixed(), "no restorable Deployment was fixed"
