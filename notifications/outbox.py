"""The durable outbox: every report is stored in the cluster before `enqueue` returns, then delivered to each
of its channels by that channel's own thread, with back-off, until it is delivered, fails permanently, or
its deadline passes.

- At least once, and not twice across restarts: the entry is named after its delivery key, so enqueueing a
  key again (or after a restart) finds the existing entry; finished entries stay `retention_seconds` as the
  record of what was sent.
- One actor: only the leader delivers (`is_leader()` is checked before every claim and every send), and a
  channel's delivery is claimed with a resourceVersion-guarded write first, so two replicas never both send it.
- One channel's outage never holds another: each channel has its own thread and its own state in the entry.
- Never on the caller's thread: `enqueue` only writes the ConfigMap and wakes the channel threads.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from kubernetes import client
from pydantic import BaseModel, ConfigDict, Field

from core.clock import Clock, utc_now
from core.config import Settings
from core.redaction import Redactor
from core.report import IncidentReport
from notifications.channels import ChannelSet, ChannelSettings
from notifications.delivery import ChannelName, Delivery, DeliveryStatus
from notifications.outbox_records import (
    ChannelDelivery,
    Conflict,
    DeliveryState,
    OutboxEntry,
    OutboxRecords,
    OutboxStoreError,
    Stored,
)

log = logging.getLogger(__name__)

MAX_CONFLICTS = 8
MAX_ENTRY_BYTES = 900_000  # a ConfigMap holds at most 1 MiB
MAX_DIFF_CHARS = 4_000


def delivery_id(key: str) -> str:
    """A DNS-safe id of `key`: names the ConfigMap, the webhook's delivery header and the mail's Message-ID."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


class OutboxPolicy(BaseModel):
    """How long and how hard to try; defaults suit production (a day of retries, a day of dedup records)."""

    model_config = ConfigDict(frozen=True)

    deadline_seconds: float = Field(default=86_400, gt=0, description="transient failures are retried this long")
    retention_seconds: float = Field(
        default=86_400, gt=0, description="finished entries (dedup records) are kept this long"
    )
    initial_backoff_seconds: float = Field(default=5.0, gt=0)
    max_backoff_seconds: float = Field(default=600.0, gt=0)
    poll_seconds: float = Field(
        default=10.0, gt=0, description="how often a channel looks for entries it was not woken for"
    )
    claim_seconds: float = Field(
        default=300.0, gt=0, description="longer than one send can take; then another may take over"
    )
    stuck_after_seconds: float = Field(
        default=900.0, gt=0, description="a pending entry this old makes the outbox stuck"
    )
    enqueue_timeout_seconds: float = Field(
        default=30.0, gt=0, description="API errors on enqueue are retried this long"
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboxPolicy:
        """The production policy; `outbox_retry_hours` sets the deadline where `Settings` has it."""
        hours = getattr(settings, "outbox_retry_hours", None)
        return cls(deadline_seconds=float(hours) * 3600) if hours else cls()

    def backoff(self, attempts: int) -> float:
        return float(min(self.max_backoff_seconds, self.initial_backoff_seconds * 2 ** max(0, attempts - 1)))


class OutboxError(Exception):
    """A report could not be stored in the cluster; the caller still holds it."""


class ChannelStats(BaseModel):
    """What `/metrics` needs about one channel (queue figures from the last poll, counts since start)."""

    queue_length: int = 0
    oldest_age_seconds: float = 0.0
    delivered: int = 0
    transient_failures: int = 0
    permanent_failures: int = 0
    expired: int = 0  # gave up: transient failures past the deadline
    last_error: str = ""
    last_poll_at: datetime | None = None


class OutboxStats(BaseModel):
    channels: dict[ChannelName, ChannelStats]
    stuck: bool


class Outbox:
    """Stores reports in `namespace` and delivers them to `channels`; `start()` the threads, `stop()` them."""

    def __init__(
        self,
        api_client: client.ApiClient,
        channels: ChannelSet,
        *,
        namespace: str,
        is_leader: Callable[[], bool] = lambda: True,
        identity: str = "",
        policy: OutboxPolicy | None = None,
        redactor: Redactor | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.channels = channels
        self.policy = policy or OutboxPolicy()
        self.records = OutboxRecords(api_client, namespace)
        # Unique per instance: a restarted process with the same pod name must not trust its predecessor's claims
        # blindly, but may take them over once they expire.
        self.identity = f"{identity or 'amos'}/{uuid.uuid4().hex[:8]}"
        self._is_leader = is_leader
        self._redactor = redactor or Redactor()
        self._clock = clock
        self._stopping = threading.Event()
        self._wake = {name: threading.Event() for name in channels.names}
        self._stats = {name: ChannelStats() for name in channels.names}
        self._answering = dict.fromkeys(channels.names, False)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.on_result: Callable[[str, str], None] | None = None  # (channel, delivered|transient|permanent|expired)

    @classmethod
    def from_settings(
        cls,
        api_client: client.ApiClient,
        settings: Settings,
        *,
        is_leader: Callable[[], bool] = lambda: True,
        identity: str = "",
        redactor: Redactor | None = None,
    ) -> Outbox:
        """The service's outbox: channels, filters and routes from the settings, entries in the state namespace."""
        channels = ChannelSet.from_settings(settings, ChannelSettings.from_settings(settings))
        return cls(
            api_client,
            channels,
            namespace=settings.store_namespace,
            is_leader=is_leader,
            identity=identity,
            policy=OutboxPolicy.from_settings(settings),
            redactor=redactor,
        )

    # --- the caller's side ------------------------------------------------------------------------------------

    def deliver(self, report: IncidentReport, key: str) -> None:
        """The orchestrator's `ReportSink`: stored before returning, sent later, once per key."""
        self.enqueue(report, key)

    def enqueue(self, report: IncidentReport, key: str) -> OutboxEntry | None:
        """Store `report` (redacted) for every channel it is meant for and return; None when no channel wants it.

        Idempotent by `key`: a key already stored returns the stored entry and sends nothing new. Raises
        `OutboxError` when the cluster cannot be written within `enqueue_timeout_seconds`.
        """
        targets = self.channels.targets(report)
        if not targets:
            log.info("report %s goes to no channel (filters and routes)", key)
            return None
        safe = fit_for_storage(self._redactor.redact(report))
        entry = OutboxEntry(
            key=key,
            delivery_id=delivery_id(key),
            created_at=self._clock(),
            report=safe,
            channels={name: ChannelDelivery() for name in targets},
        )
        stored = self._store(entry)
        for name in stored.channels:
            if name in self._wake:
                self._wake[name].set()
        return stored

    def _store(self, entry: OutboxEntry) -> OutboxEntry:
        deadline = time.monotonic() + self.policy.enqueue_timeout_seconds
        pause = 0.2
        namespace_missing, namespace_created = False, False
        while True:
            try:
                if namespace_missing and not namespace_created:
                    self.records.ensure_namespace()
                    namespace_created = True
                created = self.records.create(entry)
                if created is not None:
                    log.info("report %s stored in the outbox for %s", entry.key, ", ".join(entry.channels))
                    return created.entry
                existing = self.records.read(entry.delivery_id)
                if existing is not None:
                    log.info("report %s is already in the outbox; not stored again", entry.key)
                    return existing.entry
            except OutboxStoreError as error:
                if error.status == 404 and not namespace_created:  # the state namespace does not exist yet
                    namespace_missing = True
                    continue
                if not error.transient or time.monotonic() + pause > deadline:
                    raise OutboxError(f"the report {entry.key} could not be stored: {error}") from error
                log.warning("storing report %s failed (%s); retrying", entry.key, error)
            time.sleep(pause)
            pause = min(pause * 2, 5.0)

    # --- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        self._stopping.clear()
        for name in self.channels.names:
            thread = threading.Thread(target=self._run, args=(name,), name=f"outbox-{name.value}", daemon=True)
            thread.start()
            self._threads.append(thread)
        janitor = threading.Thread(target=self._run_janitor, name="outbox-janitor", daemon=True)
        janitor.start()
        self._threads.append(janitor)

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until no entry is due on any channel (sent, or waiting out a back-off), at most `timeout`.

        A process about to stop (an `adk web` session ending) hands its fresh reports over first instead of
        leaving them for the next process that runs. True when nothing was left due.
        """
        deadline = time.monotonic() + timeout
        while self._threads and self._is_leader():
            now = self._clock()
            try:
                due = [
                    stored
                    for name in self.channels.names
                    for stored in self.records.pending(name)
                    if self._due_in(name, stored.entry.channels[name], now) <= 0
                ]
            except OutboxStoreError as error:
                log.warning("outbox: cannot read the pending entries before stopping: %s", error)
                return False
            if not due:
                return True
            if time.monotonic() >= deadline:
                return False
            for event in self._wake.values():
                event.set()
            time.sleep(0.2)
        return False  # not running, or not the leader: nothing is delivered from here

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking new work; a send in flight finishes (bounded by its channel's timeout) and is recorded."""
        self._stopping.set()
        for event in self._wake.values():
            event.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    # --- signals ----------------------------------------------------------------------------------------------------

    def stats(self) -> OutboxStats:
        with self._lock:
            channels = {name: stats.model_copy() for name, stats in self._stats.items()}
        return OutboxStats(channels=channels, stuck=self.stuck())

    def stuck(self) -> bool:
        """True when this leader's outbox is not moving: an entry pending too long, a dead thread, no poll lately."""
        if not self._threads or not self._is_leader():
            return False
        if any(not thread.is_alive() for thread in self._threads):
            return True
        limit = self.policy.stuck_after_seconds
        now = self._clock()
        with self._lock:
            for stats in self._stats.values():
                if stats.queue_length and stats.oldest_age_seconds > limit:
                    return True
                if stats.last_poll_at is not None and (now - stats.last_poll_at).total_seconds() > limit:
                    return True
        return False

    def failures(self) -> list[tuple[str, ChannelName, str]]:
        """(key, channel, error) of every stored entry a channel gave up on."""
        return [
            (stored.entry.key, name, state.last_error)
            for stored in self.records.everything()
            for name, state in stored.entry.channels.items()
            if state.state is DeliveryState.FAILED
        ]

    # --- delivery ---------------------------------------------------------------------------------------------------

    def _run(self, name: ChannelName) -> None:
        wake = self._wake[name]
        while not self._stopping.is_set():
            pause = self.policy.poll_seconds
            if self._is_leader():
                try:
                    pause = min(pause, self._pass(name))
                except OutboxStoreError as error:
                    log.warning("outbox %s: cannot read the pending entries: %s", name.value, error)
                except Exception:  # the thread must outlive any bug in one entry
                    log.exception("outbox %s: delivery pass failed", name.value)
            wake.wait(max(0.05, pause))
            wake.clear()

    def _pass(self, name: ChannelName) -> float:
        """Deliver every due entry of `name`; the seconds until the next one is due."""
        now = self._clock()
        pending = sorted(self.records.pending(name), key=lambda stored: stored.entry.created_at)
        with self._lock:
            stats = self._stats[name]
            stats.queue_length = len(pending)
            stats.oldest_age_seconds = (now - pending[0].entry.created_at).total_seconds() if pending else 0.0
            stats.last_poll_at = now
        next_due = self.policy.poll_seconds
        for stored in pending:
            if self._stopping.is_set() or not self._is_leader():
                break
            wait = self._due_in(name, stored.entry.channels[name], self._clock())
            if wait > 0:
                next_due = min(next_due, wait)
            elif self._deliver(name, stored):
                next_due = 0.0  # look again at once: fresh queue figures, and whatever arrived meanwhile
        return next_due

    def _due_in(self, name: ChannelName, state: ChannelDelivery, now: datetime) -> float:
        """Seconds until `state` may be tried: its back-off (skipped while the channel answers), a foreign claim."""
        waits = [0.0]
        if state.next_attempt_at is not None and not self._answering[name]:
            waits.append((state.next_attempt_at - now).total_seconds())
        if state.claimed_by and state.claimed_by != self.identity and state.claim_expires_at is not None:
            waits.append((state.claim_expires_at - now).total_seconds())
        return max(waits)

    def _deliver(self, name: ChannelName, stored: Stored) -> bool:
        """Claim, send, record; False when the entry was not ours to send (claimed elsewhere, not due, not leader)."""
        claimed = self._update(stored, lambda entry: self._claim(entry, name))
        if claimed is None:
            return False
        if not self._is_leader():  # lost the lease between claim and send: hand the entry back
            self._update(claimed, lambda entry: self._release(entry, name))
            return False
        result = self.channels.get(name).deliver(claimed.entry.report, claimed.entry.delivery_id)
        # Once the channel answers again, what waits in back-off goes at once instead of at its next try.
        if result.status is not DeliveryStatus.PERMANENT:  # a permanent failure is about the report, not the channel
            self._answering[name] = result.status is DeliveryStatus.DELIVERED
        self._count(name, result)
        self._record(name, claimed, result)
        return True

    def _claim(self, entry: OutboxEntry, name: ChannelName) -> bool:
        state = entry.channels.get(name)
        now = self._clock()
        if state is None or state.state is not DeliveryState.PENDING or self._due_in(name, state, now) > 0:
            return False
        state.claimed_by = self.identity
        state.claim_expires_at = now + timedelta(seconds=self.policy.claim_seconds)
        state.attempts += 1
        return True

    def _release(self, entry: OutboxEntry, name: ChannelName) -> bool:
        state = entry.channels[name]
        if state.claimed_by != self.identity:
            return False
        state.claimed_by, state.claim_expires_at = "", None
        state.attempts = max(0, state.attempts - 1)
        return True

    def _record(self, name: ChannelName, claimed: Stored, result: Delivery) -> None:
        """Persist what happened; retried until it is written, since an unwritten success would be re-sent."""
        pause = 0.2
        while True:
            try:
                self._update(claimed, lambda entry: self._apply(entry, name, result))
                return
            except OutboxStoreError as error:
                if self._stopping.wait(pause):
                    log.error(
                        "outbox %s: stopping before the result of %s was stored: %s",
                        name.value,
                        claimed.entry.key,
                        error,
                    )
                    return
                pause = min(pause * 2, 5.0)

    def _apply(self, entry: OutboxEntry, name: ChannelName, result: Delivery) -> bool:
        state = entry.channels[name]
        if state.claimed_by != self.identity:
            log.warning("outbox %s: the claim on %s was taken over; result not recorded", name.value, entry.key)
            return False
        now = self._clock()
        state.claimed_by, state.claim_expires_at = "", None
        state.last_error = result.error
        if result.status is DeliveryStatus.DELIVERED:
            state.state, state.finished_at, state.next_attempt_at = DeliveryState.DELIVERED, now, None
            log.info("outbox %s: report %s delivered (try %d)", name.value, entry.key, state.attempts)
        elif result.status is DeliveryStatus.PERMANENT:
            state.state, state.finished_at, state.next_attempt_at = DeliveryState.FAILED, now, None
            log.error("outbox %s: report %s failed permanently: %s", name.value, entry.key, result.error)
        elif (now - entry.created_at).total_seconds() >= self.policy.deadline_seconds:
            state.state, state.finished_at, state.next_attempt_at = DeliveryState.FAILED, now, None
            state.last_error = f"gave up after {state.attempts} tries: {result.error}"
            self._count_expired(name)
            log.error("outbox %s: report %s not delivered before its deadline: %s", name.value, entry.key, result.error)
        else:
            backoff = self.policy.backoff(state.attempts)
            state.next_attempt_at = now + timedelta(seconds=backoff)
            log.warning(
                "outbox %s: report %s try %d failed (%s); next try in %.1fs",
                name.value,
                entry.key,
                state.attempts,
                result.error,
                backoff,
            )
        if entry.done and entry.finished_at is None:
            entry.finished_at = now
        return True

    def _update(self, stored: Stored, mutate: Callable[[OutboxEntry], bool]) -> Stored | None:
        """Apply `mutate` to the newest version and write it with that version; None when `mutate` declines."""
        current: Stored | None = stored
        for _ in range(MAX_CONFLICTS):
            if current is None:
                return None
            entry = current.entry.model_copy(deep=True)
            if not mutate(entry):
                return None
            try:
                version = self.records.replace(entry, current.resource_version)
                return Stored(entry=entry, resource_version=version)
            except Conflict:
                current = self.records.read(stored.entry.delivery_id)
        raise OutboxStoreError(f"update of {stored.entry.key}", RuntimeError("it kept changing"))

    def _count(self, name: ChannelName, result: Delivery) -> None:
        with self._lock:
            stats = self._stats[name]
            if result.status is DeliveryStatus.DELIVERED:
                stats.delivered += 1
            elif result.status is DeliveryStatus.TRANSIENT:
                stats.transient_failures += 1
            else:
                stats.permanent_failures += 1
            if result.error:
                stats.last_error = result.error
        self._tell(name, result.status.value)

    def _count_expired(self, name: ChannelName) -> None:
        with self._lock:
            self._stats[name].expired += 1
        self._tell(name, "expired")

    def _tell(self, name: ChannelName, result: str) -> None:
        if self.on_result is not None:
            try:
                self.on_result(name.value, result)
            except Exception:  # a metrics hook never stops delivery
                log.exception("outbox on_result hook failed")

    # --- retention ----------------------------------------------------------------------------------------------------

    def _run_janitor(self) -> None:
        interval = min(600.0, max(1.0, self.policy.retention_seconds / 10))
        while not self._stopping.wait(interval):
            if self._is_leader():
                try:
                    self.prune()
                except Exception:
                    log.exception("outbox: pruning finished entries failed")

    def prune(self) -> int:
        """Delete finished entries older than the retention; the number deleted."""
        cutoff = self._clock() - timedelta(seconds=self.policy.retention_seconds)
        old = [s for s in self.records.done() if s.entry.finished_at is not None and s.entry.finished_at < cutoff]
        for stored in old:
            self.records.delete(stored)
        return len(old)


def fit_for_storage(report: IncidentReport) -> IncidentReport:
    """A report that fits a ConfigMap: long diffs are cut first (the mail says so), then evidence."""
    if len(report.model_dump_json()) <= MAX_ENTRY_BYTES:
        return report
    fitted = report.model_copy(deep=True)
    for action in [*fitted.actions, *(a for attempt in fitted.attempts for a in attempt.actions)]:
        if len(action.diff) > MAX_DIFF_CHARS:
            action.diff = action.diff[:MAX_DIFF_CHARS] + "\n... (diff cut: too long for a report)"
    if len(fitted.model_dump_json()) > MAX_ENTRY_BYTES:
        fitted.evidence = [line[:500] for line in fitted.evidence[:50]]
        fitted.incident.evidence = fitted.incident.evidence[:20]
        fitted.incident.affected = fitted.incident.affected[:100]
    return fitted
