"""The scenario suite's judging and its tables: pure, from results and workload shapes."""

from __future__ import annotations

import copy
from typing import Any

from core.models import FaultKind
from scenarios.catalog import RESTORE, SCENARIOS, After
from scenarios.run import ScenarioResult, markdown_table, state_problems, summarize


def shape(image: str = "shop/api:2.0", memory: str | None = "64Mi", replicas: int = 2) -> dict[str, Any]:
    app: dict[str, Any] = {"name": "app", "image": image, "livenessProbe": {"httpGet": {"path": "/healthz"}}}
    if memory:
        app["resources"] = {"limits": {"memory": memory}}
    return {"template": {"spec": {"containers": [app]}}, "replicas": replicas}


def test_restored_means_equal_to_the_known_good_template() -> None:
    good, bad = shape(), shape("shop/api:2.1-missing")
    assert state_problems(After.RESTORED, good, bad, copy.deepcopy(good)) == []
    (problem,) = state_problems(After.RESTORED, good, bad, bad)
    assert "containers[0].image" in problem and "shop/api:2.1-missing" in problem
    assert state_problems(After.RESTORED, good, bad, None) == ["the workload is gone"]


def test_unchanged_means_amos_left_the_faulty_template_alone() -> None:
    bad = shape("shop/api:2.1-missing")
    assert state_problems(After.UNCHANGED, shape(), bad, copy.deepcopy(bad)) == []
    assert state_problems(After.UNCHANGED, shape(), bad, shape("shop/api:2.0"))


def test_raised_means_a_higher_limit_and_nothing_removed() -> None:
    before = shape(memory=None)
    assert state_problems(After.RAISED, None, before, shape(memory="128Mi")) == []
    assert state_problems(After.RAISED, None, before, copy.deepcopy(before)) == ["no memory limit was raised"]
    lost_probe = shape(memory="128Mi")
    del lost_probe["template"]["spec"]["containers"][0]["livenessProbe"]
    assert state_problems(After.RAISED, None, before, lost_probe) == ["container app: livenessProbe changed"]
    assert "replicas 2 became 0" in state_problems(After.RAISED, None, before, shape(memory="128Mi", replicas=0))


def result(name: str, passed: bool, mttr: float | None) -> ScenarioResult:
    return ScenarioResult(
        name=name,
        fault="ImagePullBackOff",
        namespace="scn",
        detected_seconds=1.0,
        kinds_seen=[],
        right_diagnosis=True,
        outcome="fixed" if mttr else "escalated",
        fixed_and_verified=bool(mttr),
        mttr_seconds=mttr,
        attempts=1,
        rollbacks=0,
        escalations=0,
        outside_changes=[],
        passed=passed,
    )


def test_pass_at_1_is_the_share_of_runs_and_pass_hat_k_needs_every_run() -> None:
    runs = [result("a", True, 20.0), result("a", False, None), result("a", True, 30.0), result("b", True, 10.0)]
    a, b = summarize(runs)
    assert (a.runs, a.passed, a.pass_at_1, a.pass_hat_k, a.mttr_seconds) == (3, 2, 0.667, False, 25.0)
    assert a.outcome == "escalated/fixed"
    assert (b.pass_at_1, b.pass_hat_k) == (1.0, True)
    table = markdown_table([a, b], 3, "offline:amos-rules")
    assert "| a | ImagePullBackOff | escalated/fixed | 25s | 1 | 0.67 | no |" in table
    assert "1/2 scenarios passed all 3 run(s) with model `offline:amos-rules`" in table


def test_the_catalog_covers_every_class_the_issue_names() -> None:
    names = {scenario.name for scenario in SCENARIOS}
    assert len(names) == len(SCENARIOS)
    assert len(RESTORE) >= 14
    kinds = {kind for scenario in RESTORE for kind in scenario.expected_kinds}
    assert {FaultKind.INIT_CONTAINER, FaultKind.LIVENESS_FAILED, FaultKind.NOT_READY, FaultKind.FAILED_CREATE} <= kinds
    assert {s.faulty_kind for s in RESTORE} >= {"Deployment", "StatefulSet", "DaemonSet", "CronJob", "Pod"}
    assert all(s.after is not After.ANY for s in RESTORE)
