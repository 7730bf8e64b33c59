"""Slack, webhook and e-mail channels against real local servers (http.server, aiosmtpd): payloads, signatures,
how each failure is classified, filters and routes, configuration errors, and test-notify."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr

from core.config import ConfigError, Settings
from core.report import IncidentReport, Outcome
from notifications import (
    ChannelName,
    ChannelSet,
    ChannelSettings,
    DeliveryStatus,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
    run_test_notify,
    send_test_notification,
)
from notifications.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, WebhookPayload
from tests.test_notifications import FAST, ServerFactory, free_port, mailer_for, make_report, smtp_server

__all__ = ["smtp_server"]  # the fixture, shared with tests/test_notifications.py

SECRET = "whsec-0123456789abcdef"


class HttpSink:
    """A local HTTP server standing in for Slack or a webhook receiver: scripted statuses, recorded requests."""

    def __init__(self, port: int, *statuses: int) -> None:
        self.port = port
        self.statuses = list(statuses) or [200]
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/services/T000/B000/XXXXSECRETPATH"

    def answer(self, *statuses: int) -> None:
        with self._lock:
            self.statuses = list(statuses)

    def start(self) -> HttpSink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with sink._lock:
                    status = sink.statuses[0] if len(sink.statuses) == 1 else sink.statuses.pop(0)
                    if 200 <= status < 300:
                        sink.requests.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"no")

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(body) for _, body in self.requests]


HttpFactory = Callable[..., HttpSink]


@pytest.fixture
def http_sink() -> Iterator[HttpFactory]:
    """`http_sink(*statuses, start=True)`: a local server on a free port (not listening yet with start=False)."""
    sinks: list[HttpSink] = []

    def make(*statuses: int, start: bool = True) -> HttpSink:
        sink = HttpSink(free_port(), *statuses)
        sinks.append(sink)
        return sink.start() if start else sink

    yield make
    for sink in sinks:
        sink.stop()


def test_slack_gets_block_kit_blocks_with_the_mail_s_first_screen(http_sink: HttpFactory) -> None:
    sink = http_sink()
    report = make_report(
        Outcome.ESCALATED,
        root_cause="<script>alert(1)</script> & more",
        escalation_reason="needs a person",
        human_steps=["check the node pool"],
    )

    result = SlackChannel(SecretStr(sink.url), cluster="prod").deliver(report, "d-1")

    assert result.status is DeliveryStatus.DELIVERED
    [payload] = sink.bodies()
    assert payload["text"] == "[AMOS][prod] ESCALATED: OOMKilled on Deployment/web -n shop"
    blocks = payload["blocks"]
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": payload["text"]}}
    fields = {field["text"].split("\n")[0]: field["text"].split("\n")[1] for field in blocks[2]["fields"]}
    assert fields["*Cluster*"] == "prod" and fields["*Outcome*"] == "ESCALATED"
    assert fields["*Severity*"] == "action-required" and fields["*Attempt*"] == "1 of 2"
    texts = "\n".join(block.get("text", {}).get("text", "") for block in blocks if block["type"] == "section")
    assert "*What you must do now*\n• Why a person is needed: needs a person\n• check the node pool" in texts
    assert "kubectl -n shop describe deploy/web" in texts
    assert "*Root cause*\n&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in texts  # mrkdwn-escaped
    assert "<script>" not in json.dumps(blocks)
    assert all(len(block.get("text", {}).get("text", "")) <= 3000 for block in blocks)


def test_the_webhook_gets_the_report_as_signed_json_with_a_delivery_id(http_sink: HttpFactory) -> None:
    sink = http_sink()
    report = make_report(evidence=["log: connecting with password=hunter2"])

    result = WebhookChannel(sink.url, SecretStr(SECRET), cluster="prod").deliver(report, "delivery-42")

    assert result.status is DeliveryStatus.DELIVERED
    [(headers, body)] = sink.requests
    assert headers[DELIVERY_HEADER] == "delivery-42"
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
    payload = WebhookPayload.model_validate_json(body)
    assert payload.delivery_id == "delivery-42" and payload.cluster == "prod" and payload.severity == "notice"
    assert payload.report.incident == report.incident and payload.report.actions == report.actions
    assert b"hunter2" not in body and b"[REDACTED]" in body


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, DeliveryStatus.TRANSIENT),
        (503, DeliveryStatus.TRANSIENT),
        (429, DeliveryStatus.TRANSIENT),
        (400, DeliveryStatus.PERMANENT),
        (404, DeliveryStatus.PERMANENT),
        (410, DeliveryStatus.PERMANENT),
    ],
)
def test_http_failures_are_classified_and_the_slack_url_never_shows(
    http_sink: HttpFactory, status: int, expected: DeliveryStatus
) -> None:
    sink = http_sink(status)

    slack = SlackChannel(SecretStr(sink.url), cluster="c").deliver(make_report(), "d")
    webhook = WebhookChannel(sink.url, None, cluster="c").deliver(make_report(), "d")

    assert slack.status is expected and webhook.status is expected
    assert f"HTTP {status}" in slack.error
    assert "XXXXSECRETPATH" not in slack.error


def test_a_closed_port_is_transient_and_keeps_the_url_secret(http_sink: HttpFactory) -> None:
    sink = http_sink(start=False)

    result = SlackChannel(SecretStr(sink.url), cluster="c", timeout=2).deliver(make_report(), "d")

    assert result.status is DeliveryStatus.TRANSIENT
    assert "ConnectError" in result.error and "XXXXSECRETPATH" not in result.error


def test_email_is_one_try_classified_with_the_delivery_id_in_the_message_id(smtp_server: ServerFactory) -> None:
    good, good_port = smtp_server()
    _, busy_port = smtp_server("451 4.3.0 try later")
    _, rejecting_port = smtp_server("554 5.7.1 rejected")

    delivered = EmailChannel(mailer_for(good_port)).deliver(make_report(), "abc123")
    busy = EmailChannel(mailer_for(busy_port)).deliver(make_report(), "abc123")
    rejected = EmailChannel(mailer_for(rejecting_port)).deliver(make_report(), "abc123")
    refused = EmailChannel(mailer_for(free_port())).deliver(make_report(), "abc123")

    assert delivered.status is DeliveryStatus.DELIVERED
    assert good.message()["Message-ID"] == "<amos.abc123@example.com>"
    assert busy.status is DeliveryStatus.TRANSIENT and "451" in busy.error
    assert rejected.status is DeliveryStatus.PERMANENT and "554" in rejected.error
    assert refused.status is DeliveryStatus.TRANSIENT and "ConnectionRefused" in refused.error
    assert FAST.attempts > 1  # the mailer's own retry policy is not used for one try


class Recording:
    def __init__(self, name: ChannelName) -> None:
        self._name = name

    @property
    def name(self) -> ChannelName:
        return self._name

    def deliver(self, report: IncidentReport, delivery_id: str) -> Any:
        raise AssertionError("not sent in this test")


def test_outcome_filters_and_namespace_routes_pick_the_channels() -> None:
    channels = ChannelSet(
        [Recording(ChannelName.EMAIL), Recording(ChannelName.SLACK), Recording(ChannelName.WEBHOOK)],
        outcomes={ChannelName.SLACK: [Outcome.ESCALATED, Outcome.APPROVAL_NEEDED]},
        routes={"payments": [ChannelName.WEBHOOK, ChannelName.SLACK]},
    )
    payments = make_report().incident.model_copy(
        update={"workload": make_report().incident.workload.model_copy(update={"namespace": "payments"})}
    )

    assert channels.targets(make_report(Outcome.FIXED)) == [ChannelName.EMAIL, ChannelName.WEBHOOK]
    assert channels.targets(make_report(Outcome.ESCALATED)) == list(ChannelName)
    assert channels.targets(make_report(Outcome.FIXED, incident=payments)) == [ChannelName.WEBHOOK]
    assert channels.targets(make_report(Outcome.ESCALATED, incident=payments)) == [
        ChannelName.SLACK,
        ChannelName.WEBHOOK,
    ]


def test_channels_come_from_settings_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMOS_CLUSTER_NAME", "prod-eu")
    monkeypatch.setenv("AMOS_SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T/B/X")
    monkeypatch.setenv("AMOS_WEBHOOK_URL", "https://events.example.com/amos")
    monkeypatch.setenv("AMOS_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("AMOS_SLACK_OUTCOMES", "escalated, approval_needed")
    monkeypatch.setenv("AMOS_WEBHOOK_OUTCOMES", '["fixed", "escalated"]')
    monkeypatch.setenv("AMOS_NOTIFY_ROUTES", '{"payments": ["webhook"]}')
    settings = Settings(smtp_host="mail.example.com", engineer_email="oncall@example.com")

    channel_settings = ChannelSettings.from_settings(settings)
    channels = ChannelSet.from_settings(settings, channel_settings)

    assert channel_settings.cluster_name == "prod-eu"
    assert channel_settings.slack_outcomes == [Outcome.ESCALATED, Outcome.APPROVAL_NEEDED]
    assert channel_settings.webhook_outcomes == [Outcome.FIXED, Outcome.ESCALATED]
    assert channel_settings.email_outcomes is None  # unset: every outcome
    assert channel_settings.notify_routes == {"payments": [ChannelName.WEBHOOK]}
    assert channels.names == [ChannelName.EMAIL, ChannelName.SLACK, ChannelName.WEBHOOK]
    assert channels.targets(make_report(Outcome.FIXED)) == [ChannelName.EMAIL, ChannelName.WEBHOOK]
    assert SECRET not in repr(channel_settings)
    no_mail = ChannelSet.from_settings(Settings(), channel_settings)
    assert no_mail.names == [ChannelName.SLACK, ChannelName.WEBHOOK]


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("AMOS_SLACK_OUTCOMES", '["nope"]', "AMOS_SLACK_OUTCOMES"),
        ("AMOS_WEBHOOK_URL", "ftp://example.com", "AMOS_WEBHOOK_URL"),
        ("AMOS_CLUSTER_NAME", "has spaces", "AMOS_CLUSTER_NAME"),
        ("AMOS_NOTIFY_ROUTES", "{not json", "notify_routes"),
    ],
)
def test_a_wrong_channel_setting_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigError) as raised:
        ChannelSettings.from_env()

    assert named in str(raised.value) and "\n" not in str(raised.value)


def test_test_notify_sends_the_sample_to_every_configured_channel(
    smtp_server: ServerFactory, http_sink: HttpFactory
) -> None:
    recorder, port = smtp_server()
    slack, webhook = http_sink(), http_sink(404)
    channels = ChannelSet(
        [
            EmailChannel(mailer_for(port)),
            SlackChannel(SecretStr(slack.url), cluster="lab"),
            WebhookChannel(webhook.url, SecretStr(SECRET), cluster="lab"),
        ],
        outcomes={ChannelName.EMAIL: [Outcome.ESCALATED]},  # test-notify ignores filters on purpose
    )

    results = send_test_notification(channels)

    assert [(r.channel, r.status) for r in results] == [
        (ChannelName.EMAIL, DeliveryStatus.DELIVERED),
        (ChannelName.SLACK, DeliveryStatus.DELIVERED),
        (ChannelName.WEBHOOK, DeliveryStatus.PERMANENT),
    ]
    assert "HTTP 404" in results[2].error
    assert "amos-test-notify" in str(recorder.message()["Subject"])
    assert "test notification" in slack.bodies()[0]["blocks"][-2]["text"]["text"]


def test_the_test_notify_command_prints_a_line_per_channel_and_fails_when_one_fails(
    smtp_server: ServerFactory, http_sink: HttpFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, port = smtp_server()
    webhook = http_sink(500)
    monkeypatch.setenv("AMOS_WEBHOOK_URL", webhook.url)
    settings = Settings(
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_security="none",
        engineer_email="oncall@example.com",
        from_email="amos@example.com",
    )
    lines: list[str] = []

    code = run_test_notify(settings, lines.append)

    assert code == 1
    assert lines == ["email: delivered", "webhook: transient (HTTP 500: no)"]
    monkeypatch.delenv("AMOS_WEBHOOK_URL")
    assert run_test_notify(Settings(), lines.append) == 2 and "no notification channel" in lines[-1]
