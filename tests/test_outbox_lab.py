"""The durable outbox against the lab's real API server, a real SMTP server and local HTTP servers.

Each test stores its entries in its own namespace. Failures are simulated for real (a closed port, a server
that accepts and never answers, 554/535 replies, 503s) with short back-off; nothing waits on a fixed sleep.
"""

from __future__ import annotations

import email
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from kubernetes import client
from pydantic import SecretStr

from core.config import Settings
from core.report import IncidentReport, Outcome
from lab.workloads import wait_for
from notifications import (
    ChannelName,
    ChannelSet,
    Delivery,
    DeliveryStatus,
    EmailChannel,
    Outbox,
    OutboxPolicy,
    SlackChannel,
    WebhookChannel,
)
from notifications.outbox_records import DeliveryState, OutboxEntry
from notifications.webhook import DELIVERY_HEADER
from tests.test_notifications import Recorder, ServerFactory, free_port, mailer_for, make_report, smtp_server
from tests.test_notifications_channels import HttpFactory, http_sink

pytestmark = pytest.mark.lab
__all__ = ["http_sink", "smtp_server"]  # fixtures shared with the notification tests

FAST = OutboxPolicy(
    initial_backoff_seconds=0.2,
    max_backoff_seconds=1.0,
    poll_seconds=0.5,
    claim_seconds=30,
    deadline_seconds=3600,
    enqueue_timeout_seconds=10,
)
DEADLINE = 60.0


def report_for(index: int, outcome: Outcome = Outcome.FIXED) -> IncidentReport:
    base = make_report(outcome)
    incident = base.incident.model_copy(update={"id": f"inc-{index}", "fingerprint": f"{index:016x}"})
    return make_report(outcome, incident=incident)


class SmtpOnPort:
    """An aiosmtpd server started (and restarted) on a fixed port, so a client can find it 'back up'."""

    def __init__(self, port: int, *replies: str) -> None:
        self.port = port
        self.recorder = Recorder(*replies)
        self._controller: Controller | None = None

    def start(self) -> SmtpOnPort:
        self._controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def message_ids(self) -> list[str]:
        ids = []
        for envelope in self.recorder.accepted:
            assert isinstance(envelope.content, bytes)
            ids.append(str(email.message_from_bytes(envelope.content, policy=default_policy)["Message-ID"]))
        return ids


class HangingSmtp:
    """Accepts connections and never says a word: the client must time out."""

    def __init__(self, port: int) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self.connections.append(connection)

    def stop(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(), so the port is really free
        self._listener.close()
        for connection in self.connections:
            connection.close()


class Scripted:
    """An in-process channel: answers from a script (the last answer repeats), counts sends per delivery id."""

    def __init__(self, name: ChannelName, *answers: DeliveryStatus, gate: threading.Event | None = None) -> None:
        self._name = name
        self.answers = list(answers) or [DeliveryStatus.DELIVERED]
        self.sent: Counter[str] = Counter()
        self.tries = 0
        self.entered = threading.Event()
        self.gate = gate
        self._lock = threading.Lock()

    @property
    def name(self) -> ChannelName:
        return self._name

    def deliver(self, report: IncidentReport, delivery_id: str) -> Delivery:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait()
        with self._lock:
            answer = self.answers[min(self.tries, len(self.answers) - 1)]
            self.tries += 1
            if answer is DeliveryStatus.DELIVERED:
                self.sent[delivery_id] += 1
        return Delivery(status=answer, error="" if answer is DeliveryStatus.DELIVERED else f"scripted {answer}")


@pytest.fixture
def outboxes(api_client: client.ApiClient, namespace: str) -> Iterator[Callable[..., Outbox]]:
    """`outboxes(channels, **options)`: an Outbox storing in this test's namespace; all are stopped afterwards."""
    made: list[Outbox] = []

    def make(channels: ChannelSet, *, start: bool = True, **options: Any) -> Outbox:
        options.setdefault("policy", FAST)
        outbox = Outbox(api_client, channels, namespace=namespace, identity="test", **options)
        made.append(outbox)
        if start:
            outbox.start()
        return outbox

    yield make
    for outbox in made:
        outbox.stop(timeout=10)


def entries(outbox: Outbox) -> list[OutboxEntry]:
    return [stored.entry for stored in outbox.records.everything()]


def state(outbox: Outbox, key: str, channel: ChannelName = ChannelName.EMAIL) -> Any:
    stored = outbox.records.read(outbox_id(outbox, key))
    assert stored is not None
    return stored.entry.channels[channel]


def outbox_id(outbox: Outbox, key: str) -> str:
    return next(entry.delivery_id for entry in entries(outbox) if entry.key == key)


def all_in(outbox: Outbox, wanted: DeliveryState, count: int) -> bool:
    found = entries(outbox)
    return len(found) == count and all(s.state is wanted for e in found for s in e.channels.values())


def test_enqueue_stores_the_redacted_report_before_returning_and_is_idempotent_by_key(
    api_client: client.ApiClient, namespace: str, outboxes: Callable[..., Outbox]
) -> None:
    channel = Scripted(ChannelName.EMAIL)
    outbox = outboxes(ChannelSet([channel]), start=False)
    report = make_report(evidence=["log: connecting with password=hunter2"])

    first = outbox.enqueue(report, "key-1")
    again = outbox.enqueue(report, "key-1")

    assert first is not None and again is not None and again.created_at == first.created_at
    maps = client.CoreV1Api(api_client).list_namespaced_config_map(namespace, label_selector="amos.io/record=outbox")
    assert len(maps.items) == 1
    labels = maps.items[0].metadata.labels if maps.items[0].metadata else None
    data = maps.items[0].data or {}
    assert labels is not None and labels["outbox.amos.io/email"] == "pending"
    assert labels["app.kubernetes.io/managed-by"] == "amos"
    assert "hunter2" not in data["entry.json"] and "[REDACTED]" in data["entry.json"]
    assert channel.tries == 0  # nothing is sent on the caller's thread


def test_enqueue_creates_a_missing_state_namespace(api_client: client.ApiClient, namespace: str) -> None:
    state_namespace = f"{namespace}-state"
    outbox = Outbox(api_client, ChannelSet([Scripted(ChannelName.EMAIL)]), namespace=state_namespace, policy=FAST)
    try:
        assert outbox.enqueue(report_for(1), "first-ever") is not None
        assert [entry.key for entry in entries(outbox)] == ["first-ever"]
    finally:
        client.CoreV1Api(api_client).delete_namespace(state_namespace)


def test_the_service_outbox_is_built_from_the_settings_and_stores_in_the_state_namespace(
    smtp_server: ServerFactory, api_client: client.ApiClient, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder, port = smtp_server()
    monkeypatch.setenv("AMOS_CLUSTER_NAME", "lab-1")
    monkeypatch.setenv("AMOS_EMAIL_OUTCOMES", "escalated")
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        engineer_email="oncall@example.com",
        from_email="amos@example.com",
        state_namespace=namespace,
    )
    outbox = Outbox.from_settings(api_client, settings, identity="replica-a")
    outbox.start()
    try:
        assert outbox.enqueue(report_for(1, Outcome.FIXED), "filtered") is None  # e-mail is for escalations only
        outbox.enqueue(report_for(2, Outcome.ESCALATED), "mailed")
        wait_for(lambda: len(recorder.accepted) == 1, timeout=DEADLINE, what="the escalation mailed")
    finally:
        outbox.stop()

    assert [entry.key for entry in entries(outbox)] == ["mailed"]
    assert str(recorder.message()["Subject"]).startswith("[AMOS][lab-1] ESCALATED: ")


def test_enqueue_never_runs_a_delivery_on_the_caller_s_thread(outboxes: Callable[..., Outbox]) -> None:
    gate = threading.Event()
    channel = Scripted(ChannelName.EMAIL, gate=gate)
    outbox = outboxes(ChannelSet([channel]))

    outbox.enqueue(report_for(1), "a")
    assert channel.entered.wait(DEADLINE)  # the first delivery is now blocked inside the channel
    second = outbox.enqueue(report_for(2), "b")  # and enqueue still returns
    gate.set()

    assert second is not None
    wait_for(lambda: all_in(outbox, DeliveryState.DELIVERED, 2), timeout=DEADLINE, what="both delivered")
    assert sorted(channel.sent.values()) == [1, 1]


def test_drain_before_stop_hands_over_what_is_due_and_does_not_wait_out_a_back_off(
    outboxes: Callable[..., Outbox],
) -> None:
    channel = Scripted(ChannelName.EMAIL)
    outbox = outboxes(ChannelSet([channel]), policy=FAST.model_copy(update={"poll_seconds": 30.0}))
    for index in range(3):
        outbox.enqueue(report_for(index), f"fresh-{index}")

    assert outbox.drain(timeout=DEADLINE)  # a process about to stop: what it just stored goes first
    outbox.stop()
    assert sorted(channel.sent.values()) == [1, 1, 1]

    down = outboxes(ChannelSet([Scripted(ChannelName.EMAIL, DeliveryStatus.TRANSIENT)]))
    down.enqueue(report_for(9), "down")
    wait_for(lambda: state(down, "down").attempts >= 1, timeout=DEADLINE, what="a first failed try")
    assert down.drain(timeout=DEADLINE)  # in back-off: nothing is due now, so stopping need not wait
    assert state(down, "down").state is DeliveryState.PENDING  # kept for the next process


def test_smtp_down_then_back_delivers_every_report_exactly_once(outboxes: Callable[..., Outbox]) -> None:
    port = free_port()
    outbox = outboxes(ChannelSet([EmailChannel(mailer_for(port))]))
    keys = [f"down-{index}" for index in range(3)]

    for index, key in enumerate(keys):
        outbox.enqueue(report_for(index), key)
    wait_for(lambda: all(state(outbox, key).attempts >= 2 for key in keys), timeout=DEADLINE, what="retries")
    assert all("ConnectionRefused" in state(outbox, key).last_error for key in keys)
    assert all(state(outbox, key).state is DeliveryState.PENDING for key in keys)
    server = SmtpOnPort(port).start()
    try:
        wait_for(lambda: all_in(outbox, DeliveryState.DELIVERED, 3), timeout=DEADLINE, what="delivered")
        outbox.stop()
        ids = server.message_ids()
    finally:
        server.stop()

    assert len(ids) == 3 and len(set(ids)) == 3
    stats = outbox.stats().channels[ChannelName.EMAIL]
    assert stats.delivered == 3 and stats.transient_failures >= 6


def test_once_a_channel_answers_again_what_waits_in_back_off_goes_at_once(outboxes: Callable[..., Outbox]) -> None:
    port = free_port()
    slow = FAST.model_copy(update={"initial_backoff_seconds": 3600, "max_backoff_seconds": 3600})
    outbox = outboxes(ChannelSet([EmailChannel(mailer_for(port))]), policy=slow)
    keys = [f"waiting-{index}" for index in range(3)]
    for index, key in enumerate(keys):
        outbox.enqueue(report_for(index), key)
    wait_for(lambda: all(state(outbox, key).attempts == 1 for key in keys), timeout=DEADLINE, what="one try each")
    server = SmtpOnPort(port).start()
    try:
        outbox.enqueue(report_for(9), "fresh")  # not in back-off: its delivery shows the channel is back
        wait_for(lambda: all_in(outbox, DeliveryState.DELIVERED, 4), timeout=DEADLINE, what="all four delivered")
        outbox.stop()
        assert len(server.recorder.accepted) == 4
    finally:
        server.stop()


def test_a_hanging_smtp_server_times_out_and_is_retried(outboxes: Callable[..., Outbox]) -> None:
    port = free_port()
    hanging = HangingSmtp(port)
    outbox = outboxes(ChannelSet([EmailChannel(mailer_for(port, smtp_timeout_seconds=1))]))

    outbox.enqueue(report_for(1), "hang")
    try:
        wait_for(lambda: "timed out" in state(outbox, "hang").last_error, timeout=DEADLINE, what="a timed-out try")
        wait_for(lambda: state(outbox, "hang").attempts >= 2, timeout=DEADLINE, what="and a retry")
        assert state(outbox, "hang").state is DeliveryState.PENDING
    finally:
        hanging.stop()
    server = SmtpOnPort(port).start()
    try:
        wait_for(lambda: all_in(outbox, DeliveryState.DELIVERED, 1), timeout=DEADLINE, what="delivered")
        outbox.stop()
        assert len(server.recorder.accepted) == 1
    finally:
        server.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_554_and_535_are_recorded_as_permanent_failures_and_not_retried(
    smtp_server: ServerFactory, outboxes: Callable[..., Outbox]
) -> None:
    rejecting, rejecting_port = smtp_server("554 5.7.1 message rejected")
    _, auth_port = smtp_server(credentials=("amos", "right-password"))
    rejected = outboxes(ChannelSet([EmailChannel(mailer_for(rejecting_port))]))
    rejected.enqueue(report_for(1), "rejected")
    wait_for(lambda: all_in(rejected, DeliveryState.FAILED, 1), timeout=DEADLINE, what="554 recorded")
    rejected.stop()
    # one outbox at a time: both store in this test's namespace, and a started outbox sends every pending entry
    mailer = mailer_for(auth_port, smtp_username="amos", smtp_password="wrong-password")
    bad_login = outboxes(ChannelSet([EmailChannel(mailer)]))
    bad_login.enqueue(report_for(2), "bad-login")
    wait_for(lambda: all_in(bad_login, DeliveryState.FAILED, 2), timeout=DEADLINE, what="535 recorded")
    bad_login.stop()

    assert rejecting.data_calls == 1  # a permanent reply is not retried
    assert state(rejected, "rejected").attempts == 1 and "554" in state(rejected, "rejected").last_error
    login = state(rejected, "bad-login")
    assert login.attempts == 1 and "535" in login.last_error and "wrong-password" not in login.last_error
    failures = {key: error for key, _, error in rejected.failures()}
    assert set(failures) == {"rejected", "bad-login"}
    assert rejected.stats().channels[ChannelName.EMAIL].permanent_failures == 1


def test_a_restarted_outbox_delivers_what_the_old_one_left_and_never_resends(
    outboxes: Callable[..., Outbox],
) -> None:
    port = free_port()
    channels = ChannelSet([EmailChannel(mailer_for(port))])
    old = outboxes(channels)
    old.enqueue(report_for(1), "left-1")
    wait_for(lambda: state(old, "left-1").attempts >= 1, timeout=DEADLINE, what="a failed try")
    old.stop()
    killed = outboxes(channels, start=False)  # stored its report, then died before any delivery (kill -9)
    killed.enqueue(report_for(2), "left-2")
    server = SmtpOnPort(port).start()
    try:
        restarted = outboxes(channels)
        wait_for(lambda: all_in(restarted, DeliveryState.DELIVERED, 2), timeout=DEADLINE, what="both delivered")
        restarted.enqueue(report_for(1), "left-1")  # the same report again, e.g. from journal recovery
        restarted.stop()
        again = outboxes(channels)  # and one more restart
        again.enqueue(report_for(2), "left-2")
        again.enqueue(report_for(3), "sentinel")  # delivered after anything pending, so its arrival ends the wait
        wait_for(lambda: all_in(again, DeliveryState.DELIVERED, 3), timeout=DEADLINE, what="sentinel delivered")
        again.stop()
        ids = server.message_ids()
    finally:
        server.stop()

    assert len(ids) == 3 and len(set(ids)) == 3


def test_a_slack_and_webhook_outage_delays_only_those_channels_and_each_report_reaches_each_channel_once(
    smtp_server: ServerFactory, http_sink: HttpFactory, outboxes: Callable[..., Outbox]
) -> None:
    mail, mail_port = smtp_server()
    slack = http_sink(503)
    webhook = http_sink(start=False)
    outbox = outboxes(
        ChannelSet(
            [
                EmailChannel(mailer_for(mail_port)),
                SlackChannel(SecretStr(slack.url), cluster="lab", timeout=2),
                WebhookChannel(webhook.url, SecretStr("s3cret-s3cret"), cluster="lab", timeout=2),
            ]
        )
    )
    keys = [f"report-{index}" for index in range(3)]

    for index, key in enumerate(keys):
        outbox.enqueue(report_for(index, Outcome.ESCALATED), key)
    wait_for(lambda: len(mail.accepted) == 3, timeout=DEADLINE, what="three mails while Slack and the webhook are down")
    wait_for(
        lambda: (
            all(state(outbox, key, ChannelName.WEBHOOK).attempts >= 2 for key in keys)
            and all(state(outbox, key, ChannelName.SLACK).attempts >= 2 for key in keys)
        ),
        timeout=DEADLINE,
        what="Slack and webhook retries",
    )
    assert slack.requests == [] and webhook.requests == []
    assert all(state(outbox, key, ChannelName.SLACK).state is DeliveryState.PENDING for key in keys)
    slack.answer(200)
    webhook.start()
    wait_for(lambda: all_in(outbox, DeliveryState.DELIVERED, 3), timeout=DEADLINE, what="every channel delivered")
    outbox.stop()

    ids = sorted(outbox_id(outbox, key) for key in keys)
    assert sorted(headers[DELIVERY_HEADER] for headers, _ in webhook.requests) == ids
    assert len(slack.requests) == 3 and len({body["blocks"][0]["text"]["text"] for body in slack.bodies()}) == 1
    assert len(mail.accepted) == 3


def test_two_replicas_that_both_think_they_lead_never_send_the_same_entry(outboxes: Callable[..., Outbox]) -> None:
    channel = Scripted(ChannelName.WEBHOOK)
    first = outboxes(ChannelSet([channel]), start=False)
    for index in range(12):
        first.enqueue(report_for(index), f"split-{index}")
    second = outboxes(ChannelSet([channel]), start=False)

    first.start()
    second.start()
    wait_for(lambda: all_in(first, DeliveryState.DELIVERED, 12), timeout=DEADLINE, what="all delivered")
    first.stop()
    second.stop()

    assert len(channel.sent) == 12 and set(channel.sent.values()) == {1}


def test_only_the_leader_delivers(outboxes: Callable[..., Outbox]) -> None:
    leading = threading.Event()
    channel = Scripted(ChannelName.EMAIL)
    outbox = outboxes(ChannelSet([channel]), is_leader=leading.is_set)

    outbox.enqueue(report_for(1), "follower")

    assert channel.tries == 0 and not outbox.stuck()
    leading.set()
    wait_for(lambda: all_in(outbox, DeliveryState.DELIVERED, 1), timeout=DEADLINE, what="delivered by the leader")
    assert channel.tries == 1


class ManualClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_a_channel_failing_past_its_deadline_gives_up_and_is_stuck_until_then(
    outboxes: Callable[..., Outbox],
) -> None:
    clock = ManualClock()
    policy = FAST.model_copy(update={"deadline_seconds": 3600, "stuck_after_seconds": 600})
    channel = Scripted(ChannelName.SLACK, DeliveryStatus.TRANSIENT)
    outbox = outboxes(ChannelSet([channel]), policy=policy, clock=clock)

    outbox.enqueue(report_for(1), "flaky")
    wait_for(lambda: channel.tries >= 1, timeout=DEADLINE, what="a first try")
    assert not outbox.stuck()
    clock.advance(900)  # older than stuck_after, younger than the deadline
    wait_for(outbox.stuck, timeout=DEADLINE, what="stuck")
    assert state(outbox, "flaky", ChannelName.SLACK).state is DeliveryState.PENDING
    clock.advance(3600)
    wait_for(lambda: all_in(outbox, DeliveryState.FAILED, 1), timeout=DEADLINE, what="given up")

    assert "gave up after" in state(outbox, "flaky", ChannelName.SLACK).last_error
    wait_for(lambda: not outbox.stuck(), timeout=DEADLINE, what="not stuck once nothing is pending")
    assert outbox.stats().channels[ChannelName.SLACK].expired == 1


def test_finished_entries_are_kept_for_the_retention_then_pruned(outboxes: Callable[..., Outbox]) -> None:
    clock = ManualClock()
    channel = Scripted(ChannelName.EMAIL)
    outbox = outboxes(ChannelSet([channel]), policy=FAST.model_copy(update={"retention_seconds": 3600}), clock=clock)

    outbox.enqueue(report_for(1), "kept")
    wait_for(lambda: all_in(outbox, DeliveryState.DELIVERED, 1), timeout=DEADLINE, what="delivered")
    clock.advance(1800)
    assert outbox.prune() == 0
    assert outbox.enqueue(report_for(1), "kept") is not None and channel.tries == 1  # still a dedup record
    clock.advance(1801)

    assert outbox.prune() == 1
    assert entries(outbox) == []
