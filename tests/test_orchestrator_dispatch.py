"""Dispatch rules, with the incident handler a recorder (pure logic, no cluster): bounded concurrency,
one session per workload, resolved incidents need none, deferred incidents come back, stop refuses new work,
periodic tasks never overlap themselves."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from core.models import FaultKind, Incident, IncidentState, ObjectRef, fingerprint
from orchestrator.dispatch import Dispatcher, Periodic

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def incident(
    name: str, kind: FaultKind = FaultKind.CRASH_LOOP, state: IncidentState = IncidentState.OPEN, number: int = 1
) -> Incident:
    ref = ObjectRef(kind="Deployment", namespace="shop", name=name)
    return Incident(
        id=f"{name}-{kind.name}-{number}",
        fingerprint=fingerprint(ref, kind),
        kind=kind,
        workload=ref,
        state=state,
        first_seen=NOW,
        last_seen=NOW,
    )


class Recorder:
    def __init__(self, hold: float = 0.3) -> None:
        self.hold = hold
        self.handled: list[str] = []
        self.running: set[ObjectRef] = set()
        self.most = 0
        self.overlap = False
        self.lock = threading.Lock()

    def __call__(self, item: Incident) -> None:
        with self.lock:
            self.overlap |= item.workload in self.running
            self.running.add(item.workload)
            self.most = max(self.most, len(self.running))
            self.handled.append(item.id)
        time.sleep(self.hold)
        with self.lock:
            self.running.discard(item.workload)


class Dispatch(Dispatcher):
    """The dispatcher with the orchestrator's stop sequence (stop taking, then wait for work in flight)."""

    def stop(self, grace_seconds: float) -> bool:
        self.stop_taking()
        finished = self.wait_inflight(grace_seconds)
        self.shutdown(wait=finished)
        return finished


def orchestrator(recorder: Recorder, periodic: list[Periodic] | None = None) -> Dispatch:
    amos = Dispatch(recorder, max_concurrent=2, clock=lambda: datetime.now(UTC), tick_seconds=0.05, periodic=periodic)
    amos.start()
    return amos


def test_concurrency_is_bounded_and_a_workload_has_one_session_at_a_time() -> None:
    recorder = Recorder()
    amos = orchestrator(recorder)
    for name in ("a", "b", "c", "d"):
        amos.submit(incident(name))
    amos.submit(incident("a", number=2))  # same fingerprint while running: our own fix moved it; dropped
    amos.submit(incident("a", FaultKind.ROLLOUT_STUCK))  # same workload, other fault: waits its turn
    assert amos.wait_idle(10)
    assert amos.stop(1)

    assert recorder.most == 2 and not recorder.overlap
    assert sorted(recorder.handled) == sorted(
        ["a-CRASH_LOOP-1", "b-CRASH_LOOP-1", "c-CRASH_LOOP-1", "d-CRASH_LOOP-1", "a-ROLLOUT_STUCK-1"]
    )


def test_a_resolved_incident_needs_no_session_and_cancels_a_waiting_one() -> None:
    recorder = Recorder(hold=0.5)
    amos = orchestrator(recorder)
    amos.submit(incident("a"))
    time.sleep(0.2)
    amos.submit(incident("a", FaultKind.ROLLOUT_STUCK))
    amos.submit(incident("a", FaultKind.ROLLOUT_STUCK, IncidentState.RESOLVED))
    amos.submit(incident("b", state=IncidentState.RESOLVED))
    assert amos.wait_idle(10)
    assert amos.stop(1)
    assert recorder.handled == ["a-CRASH_LOOP-1"]


def test_a_deferred_incident_comes_back_when_its_time_has_come_unless_it_resolved() -> None:
    recorder = Recorder(hold=0.0)
    amos = orchestrator(recorder)
    amos.defer(incident("a"), datetime.now(UTC) + timedelta(seconds=0.5))
    amos.defer(incident("b"), datetime.now(UTC) + timedelta(seconds=0.5))
    amos.submit(incident("b", state=IncidentState.RESOLVED))
    time.sleep(1.0)
    assert amos.wait_idle(5)
    assert amos.stop(1)
    assert recorder.handled == ["a-CRASH_LOOP-1"]


def test_stop_waits_for_work_in_flight_and_refuses_new_incidents() -> None:
    recorder = Recorder(hold=0.5)
    amos = orchestrator(recorder)
    amos.submit(incident("a"))
    time.sleep(0.2)
    assert amos.stop(grace_seconds=5)
    amos.submit(incident("b"))
    time.sleep(0.2)
    assert recorder.handled == ["a-CRASH_LOOP-1"]


def test_a_periodic_task_runs_again_but_never_overlaps_itself() -> None:
    runs: list[float] = []
    running = threading.Event()
    overlapped = threading.Event()

    def slow() -> None:
        if running.is_set():
            overlapped.set()
        running.set()
        runs.append(time.monotonic())
        time.sleep(0.3)
        running.clear()

    amos = orchestrator(Recorder(), [Periodic("slow", 0.05, slow)])
    deadline = time.monotonic() + 10
    while len(runs) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert amos.stop(2)
    assert len(runs) >= 3 and not overlapped.is_set()
