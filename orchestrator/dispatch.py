"""Dispatch: which incident runs when. One run per workload at a time, a bounded number at once.

The dispatcher knows nothing about remediation: it receives the incident handler (as
Alertmanager's dispatcher receives its pipeline) and periodic tasks (revert checks, re-driving
stale journal entries). An incident for a workload already being handled waits for that run;
a deferred one (cooldown) is held until its time; a resolved one cancels what waits.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from core.models import Incident, IncidentState, ObjectRef

log = logging.getLogger(__name__)

Handler = Callable[[Incident], None]


@dataclass
class Periodic:
    """A task run every `seconds` on a worker thread; never two runs of it at once."""

    name: str
    seconds: float
    run: Callable[[], object]
    due: float = 0.0
    running: bool = False


class Dispatcher:
    """Consumes incidents (`submit` is thread-safe and never blocks) and runs `handler` for each."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_concurrent: int,
        clock: Callable[[], datetime],
        tick_seconds: float = 0.5,
        periodic: list[Periodic] | None = None,
    ) -> None:
        self._handler = handler
        self._clock = clock
        self.tick_seconds = tick_seconds
        self._periodic = list(periodic or [])
        self._queue: queue.Queue[Incident] = queue.Queue()
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="amos-incident")
        self._lock = threading.Condition()
        self._active: dict[ObjectRef, str] = {}  # workload -> fingerprint being handled
        self._waiting: dict[ObjectRef, dict[str, Incident]] = {}
        self._deferred: dict[str, tuple[datetime, Incident]] = {}
        self._inflight = 0  # admitted: running, or waiting for a worker
        self._running = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        now = time.monotonic()
        for task in self._periodic:
            task.due = now + task.seconds
        self._thread = threading.Thread(target=self._loop, name="amos-dispatch", daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def submit(self, incident: Incident) -> None:
        if self._stopping.is_set():
            log.info("stopping: incident %s (%s) not taken", incident.id, incident.title)
            return
        self._queue.put(incident)

    def stop_taking(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=max(self.tick_seconds * 4, 2.0))

    def wait_inflight(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._inflight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def shutdown(self, wait: bool) -> None:
        self._executor.shutdown(wait=wait, cancel_futures=True)

    def wait_idle(self, timeout: float) -> bool:
        """True once no incident is queued or in flight (deferred ones do not count)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._queue.empty() and not self._inflight and not self._active:
                    return True
            time.sleep(0.1)
        return False

    @property
    def in_flight(self) -> int:
        """Incidents a worker is handling right now."""
        with self._lock:
            return self._running

    @property
    def queued(self) -> int:
        """Incidents waiting to run: not admitted yet, waiting for a worker, or behind the run on their workload."""
        with self._lock:
            waiting = sum(len(incidents) for incidents in self._waiting.values())
            return self._queue.qsize() + self._inflight - self._running + waiting

    @property
    def deferred(self) -> int:
        """Incidents held until their time (a cooldown)."""
        with self._lock:
            return len(self._deferred)

    def busy(self, workload: ObjectRef) -> bool:
        with self._lock:
            return workload in self._active

    def active_fingerprints(self) -> set[str]:
        with self._lock:
            return set(self._active.values())

    # --- the loop -----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                incident: Incident | None = self._queue.get(timeout=self.tick_seconds)
            except queue.Empty:
                incident = None
            try:
                if incident is not None:
                    self._admit(incident)
                self._release_deferred()
                self._run_due()
            except Exception:  # the dispatcher must survive anything
                log.exception("orchestrator dispatch failed")

    def _admit(self, incident: Incident) -> None:
        ref, fingerprint = incident.workload, incident.fingerprint
        with self._lock:
            if incident.state is IncidentState.RESOLVED:
                self._deferred.pop(fingerprint, None)
                self._waiting.get(ref, {}).pop(fingerprint, None)
                return
            if ref in self._active:
                if self._active[ref] != fingerprint:
                    self._waiting.setdefault(ref, {})[fingerprint] = incident
                else:
                    log.debug("incident %s: already being handled", incident.id)
                return
            if fingerprint in self._deferred:
                self._deferred[fingerprint] = (self._deferred[fingerprint][0], incident)
                return
            self._active[ref] = fingerprint
            self._inflight += 1
        self._executor.submit(self._work, incident)

    def _work(self, incident: Incident) -> None:
        with self._lock:
            self._running += 1
        try:
            if not self._stopping.is_set():
                self._handler(incident)
        except Exception:
            log.exception("incident %s: the handler failed", incident.id)
        finally:
            with self._lock:
                self._running -= 1
                self._active.pop(incident.workload, None)
                waiting = self._waiting.pop(incident.workload, {})
                waiting.pop(incident.fingerprint, None)  # our own fix or restore moved it; the run decided
                self._inflight -= 1
                self._lock.notify_all()
            for other in waiting.values():
                self._queue.put(other)

    def defer(self, incident: Incident, until: datetime) -> None:
        with self._lock:
            self._deferred[incident.fingerprint] = (until, incident)

    def _release_deferred(self) -> None:
        now = self._clock()
        with self._lock:
            due = [fp for fp, (until, _) in self._deferred.items() if until <= now]
            incidents = [self._deferred.pop(fp)[1] for fp in due]
        for incident in incidents:
            self._admit(incident)

    def _run_due(self) -> None:
        now = time.monotonic()
        for task in self._periodic:
            with self._lock:
                if task.running or now < task.due:
                    continue
                task.running, task.due = True, now + task.seconds
            self._executor.submit(self._run_periodic, task)

    def _run_periodic(self, task: Periodic) -> None:
        try:
            task.run()
        except Exception:
            log.exception("periodic task %s failed", task.name)
        finally:
            with self._lock:
                task.running = False
