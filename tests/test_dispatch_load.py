"""The dispatcher's load as its gauges show it (pure, no cluster): incidents a worker handles now, incidents
waiting (for a worker, or behind the run on their workload), incidents held for a cooldown."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from core.models import FaultKind, Incident, ObjectRef, fingerprint
from lab.workloads import wait_for
from orchestrator.dispatch import Dispatcher

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def incident(name: str, kind: FaultKind = FaultKind.CRASH_LOOP) -> Incident:
    ref = ObjectRef(kind="Deployment", namespace="shop", name=name)
    return Incident(
        id=f"{name}-{kind.name}",
        fingerprint=fingerprint(ref, kind),
        kind=kind,
        workload=ref,
        first_seen=NOW,
        last_seen=NOW,
    )


def test_in_flight_queued_and_deferred_follow_the_work() -> None:
    release = threading.Event()
    handled: list[str] = []

    def handler(item: Incident) -> None:
        handled.append(item.id)
        release.wait(10)

    dispatcher = Dispatcher(handler, max_concurrent=1, clock=lambda: datetime.now(UTC), tick_seconds=0.05)
    dispatcher.start()
    try:
        dispatcher.submit(incident("a"))
        dispatcher.submit(incident("b"))  # waits for the one worker
        dispatcher.submit(incident("a", FaultKind.ROLLOUT_STUCK))  # waits for the run on its workload
        dispatcher.defer(incident("c"), datetime.now(UTC) + timedelta(hours=1))
        wait_for(lambda: dispatcher.queued == 2, timeout=5, what="both waiting incidents to be admitted")
        assert (dispatcher.in_flight, dispatcher.queued, dispatcher.deferred) == (1, 2, 1)
        release.set()
        assert dispatcher.wait_idle(10)
        assert (dispatcher.in_flight, dispatcher.queued, dispatcher.deferred) == (0, 0, 1)
        assert sorted(handled) == ["a-CRASH_LOOP", "a-ROLLOUT_STUCK", "b-CRASH_LOOP"]
    finally:
        release.set()
        dispatcher.stop_taking()
        dispatcher.shutdown(wait=True)
