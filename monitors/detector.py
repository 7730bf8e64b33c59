"""The fault detector: turns a stream of per-object faults into deduplicated incidents.

Faults are grouped by fingerprint (workload + kind), so thirty crashing pods of one
Deployment are one incident listing thirty pods. An incident is emitted once the
fingerprint has been seen for the aggregation window, and resolved when no object
carries it any more. A fingerprint that comes back within the cooldown reopens the
same incident (same id and occurrence: a fix that did not hold, or a flapping
container); later it is a new occurrence with a new id.

Level-based: callers report each object's current faults, as often as they like;
only changes matter. Memory holds faulty objects, open fingerprints and a bounded
history of recent ones, never healthy or deleted objects.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from core.clock import Clock, utc_now
from core.config import Settings
from core.models import Evidence, Fault, FaultKind, Incident, IncidentState, ObjectRef

log = logging.getLogger(__name__)

Sink = Callable[[Incident], None]

MAX_AFFECTED = 500  # objects listed on one incident; more still count for resolution
MAX_EVIDENCE = 20  # distinct (reason, container, exit code) kept per incident
HISTORY_SIZE = 4096  # resolved fingerprints remembered for occurrence counts and reopening


class DetectorSizes(NamedTuple):
    subjects: int  # objects currently carrying a fault
    open: int  # fingerprints currently carried (emitted or still in their window)
    history: int  # resolved fingerprints remembered


@dataclass
class _Episode:
    """One fingerprint, from the first object carrying it until the last one stops."""

    fingerprint: str
    kind: FaultKind
    workload: ObjectRef
    incident_id: str
    occurrence: int
    first_seen: datetime
    started: datetime  # start of this episode: the aggregation window counts from here
    earliest: datetime  # earliest status change seen: evidence `since`, else observation time
    last_seen: datetime
    carriers: set[ObjectRef] = field(default_factory=set)
    affected: dict[ObjectRef, None] = field(default_factory=dict)  # ordered set
    evidence: dict[tuple[str, str | None, int | None], Evidence] = field(default_factory=dict)
    latency: float | None = None
    emitted: bool = False

    def add(self, subject: ObjectRef, faults: Iterable[Fault], now: datetime) -> None:
        self.carriers.add(subject)
        if len(self.affected) < MAX_AFFECTED:
            self.affected[subject] = None
        for fault in faults:
            e = fault.evidence
            self.earliest = min(self.earliest, e.since or fault.observed_at)
            key = (e.reason, e.container, e.exit_code)
            if key in self.evidence or len(self.evidence) < MAX_EVIDENCE:
                self.evidence[key] = e
        self.last_seen = now

    def incident(self, state: IncidentState) -> Incident:
        return Incident(
            id=self.incident_id,
            fingerprint=self.fingerprint,
            kind=self.kind,
            workload=self.workload,
            occurrence=self.occurrence,
            state=state,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            affected=list(self.affected),
            evidence=list(self.evidence.values()),
            detected_latency_seconds=self.latency,
        )


@dataclass(frozen=True)
class _Past:
    incident_id: str
    occurrence: int
    first_seen: datetime
    resolved_at: datetime


class FaultDetector:
    """Thread-safe: watch threads call `observe`/`forget`, a ticker calls `tick`; the sink runs outside the lock."""

    def __init__(
        self, settings: Settings, sink: Sink, clock: Clock = utc_now, history_size: int = HISTORY_SIZE
    ) -> None:
        self._window = timedelta(seconds=settings.aggregation_window_seconds)
        self._cooldown = timedelta(seconds=settings.incident_cooldown_seconds)
        self._sink = sink
        self._clock = clock
        self._history_size = history_size
        self._subjects: dict[ObjectRef, dict[str, list[Fault]]] = {}  # faulty objects: fingerprint -> faults
        self._episodes: dict[str, _Episode] = {}
        self._pending: set[str] = set()  # episodes not emitted yet
        self._history: OrderedDict[str, _Past] = OrderedDict()
        self._fault_ended: OrderedDict[ObjectRef, datetime] = OrderedDict()  # workload -> when its last fault ended
        self._outbox: deque[Incident] = deque()
        self._lock = threading.Lock()
        self._emit_lock = threading.RLock()  # one deliverer at a time keeps sink calls in order

    # ---- inputs ----------------------------------------------------------------------------
    def observe(self, subject: ObjectRef, faults: list[Fault], now: datetime | None = None) -> None:
        """`subject` now carries exactly `faults` (an empty list: it is healthy)."""
        now = now or self._clock()
        with self._lock:
            self._replace(subject, faults, now)
            self._emit_due(now)
        self._drain()

    def forget(self, subject: ObjectRef, now: datetime | None = None) -> None:
        """`subject` was deleted."""
        self.observe(subject, [], now)

    def forget_workload(self, workload: ObjectRef, now: datetime | None = None) -> None:
        """Drop every fault whose workload is `workload` (it was deleted or opted out)."""
        now = now or self._clock()
        with self._lock:
            carriers = set().union(*(e.carriers for e in self._episodes.values() if e.workload == workload))
            for subject in carriers:
                carried = self._subjects.get(subject, {}).values()
                self._replace(subject, [f for same in carried for f in same if f.workload != workload], now)
        self._drain()

    def tick(self, now: datetime | None = None) -> None:
        """Emit the incidents whose aggregation window has passed."""
        now = now or self._clock()
        with self._lock:
            self._emit_due(now)
        self._drain()

    # ---- views -----------------------------------------------------------------------------
    def open_incidents(self) -> list[Incident]:
        with self._lock:
            return [e.incident(IncidentState.OPEN) for e in self._episodes.values() if e.emitted]

    def open_workloads(self, namespace: str) -> list[ObjectRef]:
        """The workloads of `namespace` with an open incident now, each once (a CronJob once, however many runs failed)."""
        with self._lock:
            found = {e.workload for e in self._episodes.values() if e.emitted and e.workload.namespace == namespace}
        return sorted(found, key=lambda w: (w.kind, w.name))

    def last_fault_at(self, workload: ObjectRef, now: datetime) -> datetime | None:
        """`now` while any object carries a fault of `workload`, else when its last fault ended (None: none seen)."""
        with self._lock:
            if any(e.workload == workload for e in self._episodes.values()):
                return now
            return self._fault_ended.get(workload)

    def subjects(self, kind: str, namespace: str | None = None) -> set[ObjectRef]:
        """Objects of `kind` (in `namespace`, or anywhere) that currently carry a fault."""
        with self._lock:
            return {s for s in self._subjects if s.kind == kind and (namespace is None or s.namespace == namespace)}

    def sizes(self) -> DetectorSizes:
        with self._lock:
            return DetectorSizes(len(self._subjects), len(self._episodes), len(self._history))

    # ---- internals (called with the lock held) ----------------------------------------------
    def _replace(self, subject: ObjectRef, faults: list[Fault], now: datetime) -> None:
        before = self._subjects.pop(subject, {})
        grouped: dict[str, list[Fault]] = {}
        for fault in faults:
            grouped.setdefault(fault.fingerprint, []).append(fault)
        if grouped:
            self._subjects[subject] = grouped
        for fingerprint, same in grouped.items():
            episode = self._episodes.get(fingerprint) or self._begin(fingerprint, same[0], now)
            episode.add(subject, same, now)
        for fingerprint in before.keys() - grouped.keys():
            self._release(fingerprint, subject, now)

    def _begin(self, fingerprint: str, fault: Fault, now: datetime) -> _Episode:
        past = self._history.get(fingerprint)
        if past is not None and now - past.resolved_at <= self._cooldown:
            incident_id, occurrence, first_seen = past.incident_id, past.occurrence, past.first_seen
        else:
            incident_id, occurrence, first_seen = uuid.uuid4().hex[:12], (past.occurrence + 1 if past else 1), now
        episode = _Episode(
            fingerprint=fingerprint,
            kind=fault.kind,
            workload=fault.workload,
            incident_id=incident_id,
            occurrence=occurrence,
            first_seen=first_seen,
            started=now,
            earliest=now,
            last_seen=now,
        )
        self._episodes[fingerprint] = episode
        self._pending.add(fingerprint)
        return episode

    def _release(self, fingerprint: str, subject: ObjectRef, now: datetime) -> None:
        episode = self._episodes[fingerprint]
        episode.carriers.discard(subject)
        if episode.carriers:
            return
        del self._episodes[fingerprint]
        self._pending.discard(fingerprint)
        self._fault_ended[episode.workload] = now  # even a blip: a revision that blipped is not yet known-good
        self._fault_ended.move_to_end(episode.workload)
        while len(self._fault_ended) > self._history_size:
            self._fault_ended.popitem(last=False)
        if not episode.emitted:  # gone within its window: a blip, not an incident
            return
        self._outbox.append(episode.incident(IncidentState.RESOLVED))
        self._history[fingerprint] = _Past(episode.incident_id, episode.occurrence, episode.first_seen, now)
        self._history.move_to_end(fingerprint)
        while len(self._history) > self._history_size:
            self._history.popitem(last=False)

    def _emit_due(self, now: datetime) -> None:
        for fingerprint in [fp for fp in self._pending if now - self._episodes[fp].started >= self._window]:
            episode = self._episodes[fingerprint]
            episode.emitted = True
            episode.latency = max(0.0, (now - episode.earliest).total_seconds())
            self._pending.discard(fingerprint)
            self._outbox.append(episode.incident(IncidentState.OPEN))

    def _drain(self) -> None:
        """Deliver queued incidents in order; a thread that finds another one delivering leaves it the work."""
        while self._emit_lock.acquire(blocking=False):
            try:
                while True:
                    with self._lock:
                        if not self._outbox:
                            break
                        incident = self._outbox.popleft()
                    try:
                        self._sink(incident)
                    except Exception:  # one failing consumer must not stop detection
                        log.exception("incident sink failed for %s (%s)", incident.title, incident.state.value)
            finally:
                self._emit_lock.release()
            with self._lock:  # something queued between our last look and the release?
                if not self._outbox:
                    return
