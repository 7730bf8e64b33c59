"""The benchmarks' own logic: figures, the fault mix, the "every incident concluded" bookkeeping, scale shapes.

Fast and without a lab; the lab smoke run of the load benchmark is in test_benchmarks_lab.py.
"""

from __future__ import annotations

import math
import os
import re
import time
from datetime import UTC, datetime

import pytest

from benchmarks import scale
from benchmarks.figures import (
    Usage,
    cpu_share,
    describe,
    kib_field_mib,
    percentile,
    proc_status,
    process_cpu_seconds,
    verdict,
)
from benchmarks.lab_cost import cost_lines
from benchmarks.load import (
    FAULT_CYCLE,
    Conclusions,
    LoadFault,
    Target,
    breaking_patch,
    fault_plan,
    guard_of,
    healthy_manifest,
)
from core.models import FaultKind, Incident, IncidentState, ObjectRef
from core.report import FailingWorkload, IncidentReport, NamespaceOutage, Outcome

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
BROKEN_AT = 1000.0  # epoch seconds: long past, so every workload counts as broken


# ---- figures ---------------------------------------------------------------------------------------
def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 51.0  # round(0.5 * 99) = 50 -> the 51st value
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([3.0, 1.0, 2.0], 0.0) == 1.0


def test_percentile_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_describe_names_count_and_percentiles() -> None:
    assert describe("x", []) == "x: no samples"
    line = describe("latency", [1.0, 2.0, 3.0])
    assert line.startswith("latency: n=3 p50=2.00s")
    assert "max=3.00s" in line


def test_verdict_says_met_or_missed() -> None:
    assert verdict("p95 <= 2 s", True, "1.5 s") == "target p95 <= 2 s: met (1.5 s)"
    assert "MISSED" in verdict("p95 <= 2 s", False, "3 s")


def test_cpu_share_over_a_window() -> None:
    before = Usage(wall=10.0, cpu_seconds=1.0, rss_mib=50, peak_rss_mib=50)
    after = Usage(wall=20.0, cpu_seconds=1.5, rss_mib=60, peak_rss_mib=70)
    assert cpu_share(before, after) == pytest.approx(0.05)
    assert cpu_share(after, after) == 0.0


def test_proc_status_reads_this_process_and_not_a_missing_one() -> None:
    mine = proc_status()
    assert kib_field_mib(mine, "VmRSS") > 0
    assert proc_status(2**22 + 12345) == {}  # above the largest pid Linux hands out
    assert kib_field_mib({}, "VmRSS") != kib_field_mib({}, "VmRSS")  # NaN


def test_process_cpu_seconds_counts_this_process_and_not_a_missing_one() -> None:
    before = process_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert process_cpu_seconds(os.getpid()) >= before + 0.03  # clock ticks are 10 ms
    assert math.isnan(process_cpu_seconds(2**22 + 12345))


def test_lab_cost_lines_give_milliseconds_per_pod_and_a_total() -> None:
    pids = {"kube-apiserver": os.getpid(), "etcd": os.getpid()}
    lines = cost_lines({"kube-apiserver": 1.0, "etcd": 0.0}, {"kube-apiserver": 13.0, "etcd": 2.0}, pids, 1000)
    assert "12.00 ms/pod" in lines[0]
    assert "2.00 ms/pod" in lines[1]
    assert lines[-1].split() == ["total", "14.0", "s", "CPU", "14.00", "ms/pod"]


# ---- the fault mix ---------------------------------------------------------------------------------
def test_fault_plan_spreads_over_namespaces_and_mixes_faults() -> None:
    plan = fault_plan(100, [f"ns-{i}" for i in range(10)])
    assert len(plan) == 100
    assert len({t.key for t in plan}) == 100
    assert {sum(t.namespace == f"ns-{i}" for t in plan) for i in range(10)} == {10}
    assert {t.fault for t in plan} == set(LoadFault)
    assert 0 < sum(t.fault.restorable for t in plan) < 100
    assert all(DNS_LABEL.match(t.name) for t in plan)


def test_a_small_plan_has_restorable_and_non_restorable_faults() -> None:
    plan = fault_plan(4, ["a", "b"])
    assert {t.fault.restorable for t in plan} == {True, False}
    assert {t.namespace for t in plan} == {"a", "b"}


def test_fault_plan_refuses_an_empty_run() -> None:
    with pytest.raises(ValueError):
        fault_plan(0, ["a"])
    with pytest.raises(ValueError):
        fault_plan(3, [])


@pytest.mark.parametrize("fault", [None, *FAULT_CYCLE])
def test_every_first_revision_is_a_deployment_whose_selector_matches(fault: LoadFault | None) -> None:
    body = healthy_manifest("web", fault)
    assert body["kind"] == "Deployment"
    spec = body["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert [c["name"] for c in spec["template"]["spec"]["containers"]] == ["app"]


def test_non_restorable_faults_are_broken_in_their_first_revision() -> None:
    def container(fault: LoadFault) -> dict[str, object]:
        found: dict[str, object] = healthy_manifest("web", fault)["spec"]["template"]["spec"]["containers"][0]
        return found

    assert container(LoadFault.MISSING_CONFIGMAP)["envFrom"] == [{"configMapRef": {"name": "web-config"}}]
    assert container(LoadFault.UNSCHEDULABLE)["resources"] == {"limits": {}, "requests": {"cpu": "64"}}
    assert "crash" in str(container(LoadFault.CRASH_FIRST)["image"])
    for fault in (LoadFault.MISSING_CONFIGMAP, LoadFault.UNSCHEDULABLE, LoadFault.CRASH_FIRST):
        assert not fault.restorable
        with pytest.raises(ValueError, match="created broken"):
            breaking_patch(fault)


@pytest.mark.parametrize("fault", sorted(f for f in LoadFault if f.restorable))
def test_restorable_faults_patch_the_app_container_only(fault: LoadFault) -> None:
    healthy = healthy_manifest("web", fault)["spec"]["template"]["spec"]["containers"][0]
    [change] = breaking_patch(fault)["spec"]["template"]["spec"]["containers"]
    assert change["name"] == "app"
    changed = {key for key in change if key != "name"}
    assert changed and all(change[key] != healthy.get(key) for key in changed)


def test_lowered_memory_limit_keeps_request_within_the_limit() -> None:
    [change] = breaking_patch(LoadFault.LOW_MEMORY)["spec"]["template"]["spec"]["containers"]
    assert change["resources"]["limits"]["memory"] == change["resources"]["requests"]["memory"] == "64Mi"
    env = healthy_manifest("web", LoadFault.LOW_MEMORY)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "LAB_MEMORY_MI", "value": "100"} in env  # above 64 Mi: OOM; below 256 Mi: healthy


# ---- "concluded" bookkeeping -----------------------------------------------------------------------
def incident(name: str, ident: str, *, namespace: str = "ns", state: IncidentState = IncidentState.OPEN) -> Incident:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    ref = ObjectRef(kind="Deployment", namespace=namespace, name=name)
    return Incident(
        id=ident,
        fingerprint=f"{name}|crash",
        kind=FaultKind.CRASH_LOOP,
        workload=ref,
        state=state,
        first_seen=now,
        last_seen=now,
    )


def report(
    of: Incident,
    outcome: Outcome,
    *,
    reason: str | None = None,
    started: float = 0.0,
    finished: float = 1.0,
    outage: tuple[str, ...] = (),
) -> IncidentReport:
    failing = [FailingWorkload(workload=ObjectRef(kind="Deployment", namespace="ns", name=n)) for n in outage]
    return IncidentReport(
        incident=of,
        outcome=outcome,
        attempt=1,
        max_attempts=2,
        escalation_reason=reason,
        started_at=datetime.fromtimestamp(started, UTC),
        finished_at=datetime.fromtimestamp(finished, UTC),
        outage=NamespaceOutage(namespace="", total_workloads=len(failing), failing=failing) if outage else None,
    )


def conclusions(*names: str) -> Conclusions:
    return Conclusions({f"ns/{n}": BROKEN_AT for n in names})


def test_an_open_incident_is_not_concluded_until_a_report_names_it() -> None:
    c = conclusions("web")
    c.incident(incident("web", "a" * 12), 1010.0)
    assert [r.id for r in c.unconcluded()] == ["a" * 12]
    assert not c.done()
    c.report(report(incident("web", "a" * 12), Outcome.FIXED), 1050.0)
    assert c.done()
    assert c.outcomes() == {"report: fixed": 1}
    assert c.mttr_fixed() == [50.0]


def test_a_skipped_event_naming_the_incident_concludes_it_with_its_guard_rail() -> None:
    c = conclusions("web")
    c.incident(incident("web", "b" * 12), 1010.0)
    c.event(
        "Skipped",
        f"incident {'b' * 12} (crash_loop) not handled: 12 workloads across the cluster started "
        "failing within 10 minutes",
        1020.0,
    )
    assert c.done()
    assert c.outcomes() == {"event: Skipped (storm)": 1}
    assert c.guard_holds == {"event (Skipped) held by storm": 1}


def test_an_event_that_names_another_incident_or_only_defers_concludes_nothing() -> None:
    c = conclusions("web")
    c.incident(incident("web", "c" * 12), 1010.0)
    c.event("Skipped", f"incident {'d' * 12} not handled", 1020.0)
    c.event("Deferred", f"incident {'c' * 12}: cooldown until 12:00:00", 1020.0)
    assert [r.id for r in c.unconcluded()] == ["c" * 12]
    assert c.events == {"Skipped": 1, "Deferred": 1}


def test_a_grouped_report_concludes_every_listed_workload() -> None:
    c = conclusions("a", "b", "c")
    for name in "abc":
        c.incident(incident(name, name * 12), 1010.0)
    reason = "3 workloads across the cluster started failing within 10 minutes"
    c.report(report(incident("a", "a" * 12), Outcome.ESCALATED, reason=reason, outage=("a", "b")), 1030.0)
    assert [r.workload for r in c.unconcluded()] == ["ns/c"]
    assert c.outcomes()["listed in a grouped storm report"] == 1
    assert c.outcomes()["report: escalated (storm)"] == 1


def test_resolved_after_its_workload_was_reported_counts_as_concluded_but_a_silent_resolve_does_not() -> None:
    c = conclusions("web", "other")
    c.incident(incident("web", "e" * 12), 1010.0)
    c.incident(incident("web", "f" * 12), 1011.0)
    c.incident(incident("other", "g" * 12), 1012.0)
    c.report(report(incident("web", "e" * 12), Outcome.FIXED), 1040.0)
    c.incident(incident("web", "f" * 12, state=IncidentState.RESOLVED), 1041.0)
    c.incident(incident("other", "g" * 12, state=IncidentState.RESOLVED), 1042.0)
    assert [r.id for r in c.unconcluded()] == ["g" * 12]


def test_a_report_after_an_event_names_the_outcome_but_keeps_the_first_time() -> None:
    c = conclusions("web")
    c.incident(incident("web", "9" * 12), 1010.0)
    c.event("Skipped", f"incident {'9' * 12} not handled: namespace ns looks like an outage", 1020.0)
    c.report(report(incident("web", "9" * 12), Outcome.FIXED), 1100.0)
    [record] = c.snapshot()
    assert record.concluded_by == "report: fixed"
    assert record.concluded_at == 1020.0


def test_workloads_not_broken_yet_or_not_in_the_run_are_not_followed() -> None:
    c = Conclusions({"ns/web": float("inf")})  # not broken yet
    c.incident(incident("web", "i" * 12), 1010.0)
    c.incident(incident("bystander", "j" * 12), 1010.0)
    assert c.snapshot() == []
    assert c.workloads_without_incident() == ["ns/web"]


def test_max_overlap_counts_work_done_at_the_same_time() -> None:
    c = conclusions("a", "b", "c")
    c.report(report(incident("a", "a" * 12), Outcome.FIXED, started=0, finished=10), 1.0)
    c.report(report(incident("b", "b" * 12), Outcome.FIXED, started=5, finished=15), 1.0)
    c.report(report(incident("c", "c" * 12), Outcome.FIXED, started=10, finished=20), 1.0)  # a ended as c began
    assert c.max_overlap() == 2


def test_guard_of_reads_the_guard_rail_from_its_reason() -> None:
    assert guard_of("the action budget of 30 per hour is used up") == "budget"
    assert guard_of("the circuit breaker is open since ...") == "breaker"
    assert guard_of("namespace x looks like an outage: 5 of 6") == "outage"
    assert guard_of("the image does not exist") == ""


def test_target_key_is_namespace_and_name() -> None:
    assert Target("ns", "web", LoadFault.BAD_IMAGE).key == "ns/web"


# ---- scale shapes ------------------------------------------------------------------------------------
def test_scale_shape_divides_pods_over_deployments() -> None:
    assert scale.shape(50000, 5000) == (5000, 10)
    assert scale.shape(5000, 500) == (500, 10)
    assert scale.shape(10, 50) == (10, 1)  # never more Deployments than pods
    with pytest.raises(ValueError):
        scale.shape(0, 10)


def test_scale_starts_enough_nodes_for_the_pods() -> None:
    assert scale.nodes_for(50000) * scale.PODS_PER_NODE >= 50000 * 1.1
    assert scale.nodes_for(100) == 3


def test_scale_spreads_deployments_over_namespaces_with_unique_names() -> None:
    assert scale.namespaces_for(5000, None) == 5000 // scale.DEPLOYMENTS_PER_NAMESPACE
    assert scale.namespaces_for(10, None) == 1
    assert scale.namespaces_for(5000, 7) == 7
    targets = scale.spread(5, ["a", "b"])
    assert [t.namespace for t in targets] == ["a", "b", "a", "b", "a"]
    assert len({t.name for t in targets}) == 5  # detections are keyed by name alone


def test_scale_deployments_carry_their_creation_batch() -> None:
    manifest = scale.deployment("svc-00001", 10, batch=3)
    assert manifest["metadata"]["labels"] == {scale.BATCH_LABEL: "3"}
    assert scale.BATCH_LABEL not in manifest["spec"]["template"]["metadata"]["labels"]  # not on the pods


def test_scale_latencies_measure_both_agents_from_when_the_fault_was_visible() -> None:
    amos = {
        ("web", "crash_loop"): scale.Detection("web", "crash_loop", 101.5, 100.0),
        ("api", "crash_loop"): scale.Detection("api", "crash_loop", 103.0, 101.0),
    }
    polling = {
        ("web", "crash_loop"): scale.Detection("web", "crash_loop", 125.0, None),
        ("other", "crash_loop"): scale.Detection("other", "crash_loop", 130.0, None),
    }
    visible = {("web", "crash_loop"): 100.75, ("other", "image_pull"): 99.0}
    found = {"amos": amos, "polling": polling}
    assert scale.latencies(found, visible) == ([0.75], [24.25])
    assert scale.stamped_latencies(found) == [1.5, 2.0]


def test_scale_cost_per_pod() -> None:
    before = Usage(0.0, 0.0, rss_mib=50.0, peak_rss_mib=50.0)
    after = Usage(1.0, 1.0, rss_mib=100.0, peak_rss_mib=100.0)
    assert "10.2 KiB/pod" in scale.cost_per_pod(before, after, 5000)


def test_scale_growth_lines_give_each_stretch_its_rate_and_lab_cpu_per_pod() -> None:
    def at(ready: int, wall: float, rss: float, lab_cpu: float) -> scale.Checkpoint:
        return scale.Checkpoint(ready, wall, Usage(wall, 0.0, rss_mib=rss, peak_rss_mib=rss), lab_cpu)

    start = at(0, 0.0, 50.0, 10.0)
    lines = scale.growth_lines(
        start, [at(5000, 50.0, 60.0, 110.0), at(5000, 51.0, 60.0, 111.0), at(15000, 250.0, 80.0, 410.0)]
    )
    assert len(lines) == 2  # a checkpoint with no new pods is no stretch
    assert "0 ->   5000 pods: 100.0 pods/s, lab CPU  20.0 ms/pod" in lines[0]
    assert "5000 ->  15000 pods:  50.0 pods/s, lab CPU  30.0 ms/pod" in lines[1]
    assert "30 MiB over 15000 pods" in lines[1]


def test_scale_refuses_a_burst_larger_than_the_deployments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        scale.main(["--pods", "100", "--deployments", "10", "--burst", "11"])
    assert "--burst must be between 1 and" in capsys.readouterr().err
