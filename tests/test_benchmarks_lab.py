"""Benchmarks on the lab: a small load run concludes every incident; the fault clock times only the burst."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from benchmarks import scale
from benchmarks.fault_clock import FaultClock
from benchmarks.kube import manifest
from benchmarks.load import LoadConfig, print_result, reset_breaker, run_load, run_settings
from core.config import load_settings
from core.models import FaultKind
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


def test_the_fault_clock_times_only_the_burst_and_before_an_agent_could_see_it(
    api_client: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api_client)
    for name in ("burst", "bystander"):
        apps.create_namespaced_deployment(namespace, manifest(scale.deployment(name, 2)))
    settings = load_settings(namespaces=[namespace])
    clock = FaultClock(api_client, settings, frozenset(kind.value for kind in scale.POD_KINDS))
    clock.start()
    try:
        before = time.time()
        scale.break_deployments(apps, [scale.Workload(namespace, "burst")])  # the first broken image: not pullable
        bystander = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "lab/web:2.0-crash"}]}}}}
        apps.patch_namespaced_deployment("bystander", namespace, bystander)  # broken, but not by the burst
        deadline = time.monotonic() + 60
        while not clock.seen() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # the bystander's crash loop has had its time to show
        seen = clock.seen()
    finally:
        clock.stop()
    key = ("burst", FaultKind.IMAGE_PULL.value)
    assert list(seen) == [key]
    assert before < seen[key] < time.time()
