"""The fault detector (grouping, windows, resolution, occurrences, bounded memory) and scope rules."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from core.config import Settings
from core.models import Evidence, Fault, FaultKind, Incident, IncidentState, ObjectRef
from monitors.detector import FaultDetector
from monitors.scope import Scope, namespace_in_scope, opted_out, watched_namespaces

T0 = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
SETTINGS = Settings(aggregation_window_seconds=1.0, incident_cooldown_seconds=30.0)


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def deployment(name: str = "web", namespace: str = "shop") -> ObjectRef:
    return ObjectRef(kind="Deployment", namespace=namespace, name=name)


def pod(name: str, namespace: str = "shop") -> ObjectRef:
    return ObjectRef(kind="Pod", namespace=namespace, name=name)


def crash(
    subject: ObjectRef,
    workload: ObjectRef,
    now: datetime = T0,
    since: datetime | None = None,
    kind: FaultKind = FaultKind.CRASH_LOOP,
) -> Fault:
    evidence = Evidence(
        reason=kind.value,
        message=f"back-off restarting {subject.name}",
        container="app",
        exit_code=1,
        restart_count=3,
        since=since,
    )
    return Fault(kind=kind, workload=workload, subject=subject, evidence=evidence, observed_at=now)


class Recorder:
    def __init__(self) -> None:
        self.incidents: list[Incident] = []

    def __call__(self, incident: Incident) -> None:
        self.incidents.append(incident)

    def opened(self) -> list[Incident]:
        return [i for i in self.incidents if i.state is IncidentState.OPEN]

    def resolved(self) -> list[Incident]:
        return [i for i in self.incidents if i.state is IncidentState.RESOLVED]


def detector(settings: Settings = SETTINGS, **kwargs: int) -> tuple[FaultDetector, Recorder]:
    sink = Recorder()
    return FaultDetector(settings, sink, clock=lambda: T0, **kwargs), sink


def break_pods(d: FaultDetector, workload: ObjectRef, count: int, now: datetime = T0) -> list[ObjectRef]:
    pods = [pod(f"{workload.name}-{i}", workload.namespace) for i in range(count)]
    for p in pods:
        d.observe(p, [crash(p, workload, now)], now)
    return pods


# ---- grouping and emission ---------------------------------------------------------------------
def test_thirty_crashing_pods_of_one_deployment_are_one_incident() -> None:
    d, sink = detector()
    pods = break_pods(d, deployment(), 30, later(0.2))
    d.tick(later(0.9))
    assert sink.incidents == []  # still inside the aggregation window
    d.tick(later(1.2))
    (incident,) = sink.incidents
    assert incident.kind is FaultKind.CRASH_LOOP and incident.workload == deployment()
    assert incident.state is IncidentState.OPEN and incident.occurrence == 1
    assert sorted(incident.affected, key=str) == sorted(pods, key=str)
    assert incident.evidence and incident.evidence[0].exit_code == 1
    for p in pods:  # the same faults reported again change nothing
        d.observe(p, [crash(p, deployment(), later(2))], later(2))
    d.tick(later(5))
    assert len(sink.incidents) == 1


def test_two_broken_deployments_are_two_incidents() -> None:
    d, sink = detector()
    break_pods(d, deployment("web"), 5)
    break_pods(d, deployment("api"), 5)
    d.tick(later(1))
    assert {i.workload.name for i in sink.opened()} == {"web", "api"}
    assert len({i.id for i in sink.incidents}) == 2


def test_two_kinds_on_one_deployment_are_two_incidents() -> None:
    d, sink = detector()
    a, b = pod("web-a"), pod("web-b")
    d.observe(a, [crash(a, deployment())])
    d.observe(b, [crash(b, deployment(), kind=FaultKind.OOM_KILLED)])
    d.tick(later(1))
    assert {i.kind for i in sink.incidents} == {FaultKind.CRASH_LOOP, FaultKind.OOM_KILLED}


def test_window_zero_emits_on_observe() -> None:
    d, sink = detector(Settings(aggregation_window_seconds=0))
    break_pods(d, deployment(), 1)
    assert len(sink.opened()) == 1


def test_latency_is_measured_from_the_earliest_status_change() -> None:
    d, sink = detector()
    a, b = pod("web-a"), pod("web-b")
    d.observe(a, [crash(a, deployment(), T0, since=later(-5))], T0)
    d.observe(b, [crash(b, deployment(), later(0.5), since=later(-2))], later(0.5))
    d.tick(later(1.5))
    assert sink.incidents[0].detected_latency_seconds == 6.5
    assert sink.incidents[0].first_seen == T0


def test_latency_falls_back_to_the_observation_time() -> None:
    d, sink = detector()
    break_pods(d, deployment(), 1, later(0.25))
    d.tick(later(1.25))
    assert sink.incidents[0].detected_latency_seconds == 1.0


def test_a_blip_shorter_than_the_window_is_no_incident() -> None:
    d, sink = detector()
    (p,) = break_pods(d, deployment(), 1)
    d.observe(p, [], later(0.5))
    d.tick(later(2))
    assert sink.incidents == []
    assert d.sizes() == (0, 0, 0)


def test_pods_joining_after_emission_are_listed() -> None:
    d, sink = detector()
    break_pods(d, deployment(), 2)
    d.tick(later(1))
    late = pod("web-late")
    d.observe(late, [crash(late, deployment(), later(3))], later(3))
    (current,) = d.open_incidents()
    assert late in current.affected and current.id == sink.incidents[0].id and current.last_seen == later(3)
    assert len(sink.incidents) == 1


# ---- resolution and occurrences ----------------------------------------------------------------
def test_resolved_when_no_object_carries_the_fingerprint() -> None:
    d, sink = detector()
    pods = break_pods(d, deployment(), 3)
    d.tick(later(1))
    d.observe(pods[0], [], later(2))
    d.forget(pods[1], later(2))  # deleted
    assert sink.resolved() == []
    d.observe(pods[2], [], later(3))
    (opened,), (resolved,) = sink.opened(), sink.resolved()
    assert resolved.id == opened.id and resolved.state is IncidentState.RESOLVED
    assert len(resolved.affected) == 3
    assert d.open_incidents() == []


def test_coming_back_after_the_cooldown_is_a_new_occurrence() -> None:
    d, sink = detector()
    (p,) = break_pods(d, deployment(), 1)
    d.tick(later(1))
    d.observe(p, [], later(2))
    d.observe(p, [crash(p, deployment(), later(100))], later(100))
    d.tick(later(101))
    first, _, second = sink.incidents
    assert (second.state, second.occurrence, first.occurrence) == (IncidentState.OPEN, 2, 1)
    assert second.id != first.id and second.fingerprint == first.fingerprint
    assert second.first_seen == later(100)


def test_coming_back_within_the_cooldown_reopens_the_same_incident() -> None:
    d, sink = detector()
    (p,) = break_pods(d, deployment(), 1)
    d.tick(later(1))
    d.observe(p, [], later(2))
    d.observe(p, [crash(p, deployment(), later(20))], later(20))
    d.tick(later(21))
    first, resolved, reopened = sink.incidents
    assert resolved.state is IncidentState.RESOLVED and reopened.state is IncidentState.OPEN
    assert reopened.id == first.id and reopened.occurrence == 1 and reopened.first_seen == T0


def test_forget_workload_resolves_its_incidents() -> None:
    d, sink = detector()
    break_pods(d, deployment("web"), 4)
    break_pods(d, deployment("api"), 2)
    d.tick(later(1))
    d.forget_workload(deployment("web"), later(2))
    assert [i.workload.name for i in sink.resolved()] == ["web"]
    assert d.subjects("Pod") == {pod("api-0"), pod("api-1")}
    assert d.subjects("Pod", "elsewhere") == set()


def test_a_failing_sink_does_not_stop_detection() -> None:
    calls: list[Incident] = []

    def sink(incident: Incident) -> None:
        calls.append(incident)
        raise RuntimeError("mail server down")

    d = FaultDetector(SETTINGS, sink)
    break_pods(d, deployment("web"), 1)
    break_pods(d, deployment("api"), 1)
    d.tick(later(1))
    assert len(calls) == 2


# ---- memory and threads ------------------------------------------------------------------------
def test_memory_stays_bounded_when_ten_thousand_pods_come_and_go() -> None:
    d, sink = detector(history_size=64)
    for i in range(10_000):
        now = later(i)
        workload = deployment(f"app-{i % 200}")
        p = pod(f"app-{i}")
        d.observe(p, [crash(p, workload, now)], now)
        d.tick(later(i + 1))
        d.forget(p, later(i + 1))
    sizes = d.sizes()
    assert (sizes.subjects, sizes.open) == (0, 0)
    assert sizes.history <= 64
    assert len(sink.opened()) == len(sink.resolved()) == 10_000


def test_affected_and_evidence_lists_are_capped() -> None:
    d, _ = detector(Settings(aggregation_window_seconds=0))
    break_pods(d, deployment(), 2_000)
    (current,) = d.open_incidents()
    assert len(current.affected) <= 500 and len(current.evidence) <= 20
    assert d.sizes().subjects == 2_000


def test_concurrent_observers_give_one_incident() -> None:
    d, sink = detector()

    def worker(start: int) -> None:
        for i in range(start, start + 250):
            p = pod(f"web-{i}")
            d.observe(p, [crash(p, deployment())], T0)

    threads = [threading.Thread(target=worker, args=(n * 250,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    d.tick(later(1))
    (incident,) = sink.incidents
    assert len(incident.affected) == 500  # the cap; 2,000 pods carry it
    assert len(d.subjects("Pod")) == 2_000


# ---- scope -------------------------------------------------------------------------------------
def test_system_and_own_namespaces_are_out_of_scope() -> None:
    s = Settings(own_namespace="amos-system")
    assert namespace_in_scope("shop", s)
    assert not namespace_in_scope("kube-system", s) and not namespace_in_scope("amos-system", s)
    assert watched_namespaces(s) is None  # all namespaces, filtered


def test_a_namespace_list_limits_scope() -> None:
    s = Settings(namespaces=["shop", "kube-system"])
    assert namespace_in_scope("shop", s) and not namespace_in_scope("blog", s)
    assert watched_namespaces(s) == ["shop"]  # excluded wins over listed


def test_opt_out_annotation() -> None:
    s = Settings()
    assert opted_out({"amos.io/ignore": "true"}, s) and opted_out({"amos.io/ignore": "True "}, s)
    assert not opted_out({"amos.io/ignore": "false"}, s) and not opted_out({}, s)


def test_scope_covers_objects_unless_they_or_their_workload_opted_out() -> None:
    scope = Scope(Settings())
    web, api = deployment("web"), deployment("api")
    assert scope.covers(web, {})
    assert not scope.covers(web, {"amos.io/ignore": "true"})  # the pod itself
    assert scope.note_workload(web, {"amos.io/ignore": "true"})
    assert not scope.covers(web, {}) and scope.covers(api, {})
    assert not scope.note_workload(web, {})  # annotation removed
    assert scope.covers(web, {})
    scope.replace_workloads("Deployment", None, [api])
    assert not scope.covers(api, {}) and scope.covers(web, {})
    scope.forget_workload(api)
    assert scope.covers(api, {})
    assert not scope.covers(deployment("dns", "kube-system"), {})
