"""Dispatch rules, with `process` replaced by a recorder (pure logic, no cluster): bounded concurrency,
one session per workload, resolved incidents need none, deferred incidents come back, stop refuses new work."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from kubernetes import client

from core.config import Settings
from core.models import FaultKind, Incident, IncidentState, ObjectRef, fingerprint
from core.report import IncidentReport
from orchestrator.loop import Orchestrator

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def incident(name: str, kind: FaultKind = FaultKind.CRASH_LOOP, state: IncidentState = IncidentState.OPEN,
             number: int = 1) -> Incident:
    ref = ObjectRef(kind="Deployment", namespace="shop", name=name)
    return Incident(id=f"{name}-{kind.name}-{number}", fingerprint=fingerprint(ref, kind), kind=kind, workload=ref,
                    state=state, first_seen=NOW, last_seen=NOW)


class Recorder:
    def __init__(self, hold: float = 0.3) -> None:
        self.hold = hold
        self.handled: list[str] = []
        self.running: set[ObjectRef] = set()
        self.most = 0
        self.overlap = False
        self.lock = threading.Lock()

    def __call__(self, item: Incident) -> IncidentReport | None:
        with self.lock:
            self.overlap |= item.workload in self.running
            self.running.add(item.workload)
            self.most = max(self.most, len(self.running))
            self.handled.append(item.id)
        time.sleep(self.hold)
        with self.lock:
            self.running.discard(item.workload)
        return None


def orchestrator(recorder: Recorder, **settings: object) -> Orchestrator:
    values: dict[str, object] = {"max_concurrent_incidents": 2, "state_namespace": "amos-test"}
    amos = Orchestrator(Settings(**(values | settings)), client.ApiClient(), None, tick_seconds=0.05,
                        revert_check_seconds=3600)
    amos.process = recorder  # type: ignore[method-assign]
    amos.start(recover=False)
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
    assert sorted(recorder.handled) == sorted(["a-CRASH_LOOP-1", "b-CRASH_LOOP-1", "c-CRASH_LOOP-1",
                                               "d-CRASH_LOOP-1", "a-ROLLOUT_STUCK-1"])


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
    amos._defer(incident("a"), datetime.now(UTC) + timedelta(seconds=0.5))
    amos._defer(incident("b"), datetime.now(UTC) + timedelta(seconds=0.5))
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
