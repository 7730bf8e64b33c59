"""Two fast scenarios through the suite's runner on the lab: the same code `python -m scenarios` runs."""

from __future__ import annotations

import pytest
from kubernetes import client

from lab.cluster import LabCluster
from scenarios.catalog import SCENARIOS
from scenarios.run import Collector, amos_on, run_scenario, suite_settings, summarize

pytestmark = pytest.mark.lab

FAST = ("bad-image-rollout", "unschedulable-new-workload")


def test_the_runner_judges_a_fix_and_an_escalation_with_the_cluster_state(
    lab: LabCluster, api_client: client.ApiClient
) -> None:
    chosen = [scenario for scenario in SCENARIOS if scenario.name in FAST]
    collector = Collector()
    with amos_on(api_client, suite_settings(lab.kubeconfig), collector):
        results = [run_scenario(api_client, scenario, collector) for scenario in chosen]
    by_name = {result.name: result for result in results}
    fixed, escalated = by_name["bad-image-rollout"], by_name["unschedulable-new-workload"]
    assert fixed.passed, fixed.notes
    assert fixed.outcome == "fixed" and fixed.mttr_seconds is not None and fixed.state_problems == []
    assert escalated.passed, escalated.notes
    assert escalated.outcome == "escalated" and escalated.mttr_seconds is None
    assert [s.pass_hat_k for s in summarize(results)] == [True, True]
