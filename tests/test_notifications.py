"""Notifications against a real SMTP server on localhost (aiosmtpd): what arrives, what never does, and failures."""

from __future__ import annotations

import base64
import email
import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from core.config import Settings
from core.models import Evidence, FaultKind, Incident, ObjectRef
from core.redaction import Redactor
from core.report import ActionRecord, ActionStatus, IncidentReport, Outcome
from notifications import Mailer, RetryPolicy, render_report

FAST = RetryPolicy(attempts=3, initial_wait_seconds=0.01, max_wait_seconds=0.05, max_total_seconds=5)
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
WEB = ObjectRef(kind="Deployment", namespace="shop", name="web")
DIFF = (
    "--- before\n+++ after\n@@ spec.template.spec.containers[app].resources.limits @@\n-memory: 128Mi\n+memory: 256Mi"
)


def make_report(outcome: Outcome = Outcome.FIXED, **changes: Any) -> IncidentReport:
    incident = Incident(
        id="inc-42",
        fingerprint="0123456789abcdef",
        kind=FaultKind.OOM_KILLED,
        workload=WEB,
        first_seen=NOW,
        last_seen=NOW,
        affected=[ObjectRef(kind="Pod", namespace="shop", name="web-7d9f-abcde")],
        evidence=[
            Evidence(
                reason="OOMKilled",
                message="container app used <script>alert('x')</script> & more than its limit",
                container="app",
                exit_code=137,
                restart_count=5,
            )
        ],
    )
    fields: dict[str, Any] = {
        "incident": incident,
        "outcome": outcome,
        "attempt": 1,
        "max_attempts": 2,
        "root_cause": "memory limit of 128Mi is below the working set",
        "confidence": 0.9,
        "evidence": ["working set 190Mi at the time of the kill"],
        "actions": [
            ActionRecord(
                verb="patch", target=WEB, summary="raise memory limit to 256Mi", status=ActionStatus.APPLIED, diff=DIFF
            )
        ],
        "verification": "3/3 pods ready and no restart for 60s",
        "model": "offline",
        "started_at": NOW,
        "finished_at": NOW + timedelta(seconds=75),
    }
    return IncidentReport(**(fields | changes))


class Recorder:
    """An SMTP handler that answers DATA with scripted replies (the last one repeats) and keeps what it accepted."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies) or ["250 OK"]
        self.data_calls = 0
        self.accepted: list[Envelope] = []
        self.logins: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        reply = self.replies[min(self.data_calls, len(self.replies) - 1)]
        self.data_calls += 1
        if reply.startswith("250"):
            self.accepted.append(envelope)
        return reply

    def message(self) -> EmailMessage:
        assert len(self.accepted) == 1
        content = self.accepted[0].content
        assert isinstance(content, bytes)
        parsed = email.message_from_bytes(content, policy=default_policy)
        assert isinstance(parsed, EmailMessage)
        return parsed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


ServerFactory = Callable[..., tuple[Recorder, int]]


@pytest.fixture
def smtp_server() -> Iterator[ServerFactory]:
    """Start a real SMTP server on a free localhost port; stopped after the test."""
    controllers: list[Controller] = []

    def start(*replies: str, credentials: tuple[str, str] | None = None) -> tuple[Recorder, int]:
        recorder = Recorder(*replies)
        auth: dict[str, Any] = {}
        if credentials is not None:

            def authenticate(
                server: Any, session: Session, envelope: Envelope, mechanism: str, data: Any
            ) -> AuthResult:
                assert isinstance(data, LoginPassword)
                recorder.logins.append(data.login)
                ok = (data.login.decode(), data.password.decode()) == credentials
                return AuthResult(success=ok, handled=False)

            auth = {"authenticator": authenticate, "auth_required": True, "auth_require_tls": False}
        port = free_port()
        controller = Controller(recorder, hostname="127.0.0.1", port=port, **auth)
        controller.start()
        controllers.append(controller)
        return recorder, port

    yield start
    for controller in controllers:
        controller.stop()


def mailer_for(port: int, **settings: Any) -> Mailer:
    values: dict[str, Any] = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_security": "none",
        "smtp_timeout_seconds": 2,
        "engineer_email": "oncall@example.com",
        "from_email": "amos@example.com",
    }
    return Mailer(Settings(**(values | settings)), retry=FAST)


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def test_a_fixed_report_arrives_with_subject_both_bodies_and_the_diff(smtp_server: ServerFactory) -> None:
    recorder, port = smtp_server()

    result = mailer_for(port).send_report(make_report())

    assert result.delivered and result.attempts == 1 and result.error is None
    assert recorder.accepted[0].rcpt_tos == ["oncall@example.com"]
    message = recorder.message()
    assert message["Subject"] == "[AMOS][kubernetes] FIXED: OOMKilled on Deployment/web -n shop"
    assert message["From"] == "amos@example.com" and message["To"] == "oncall@example.com"
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    for line in DIFF.splitlines():
        assert line in text
    assert "[applied] patch Deployment/web -n shop: raise memory limit to 256Mi" in text
    assert "Confidence: 90%" in text
    assert "3/3 pods ready and no restart for 60s" in text
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more" in html
    assert "<script>alert('x')</script> & more" in text  # plain text is not escaped


def test_an_escalation_tells_the_human_what_to_do(smtp_server: ServerFactory) -> None:
    recorder, port = smtp_server()
    report = make_report(
        Outcome.ESCALATED,
        actions=[
            ActionRecord(
                verb="scale",
                target=WEB,
                summary="scale to 60 replicas",
                status=ActionStatus.REFUSED,
                reason="60 replicas exceeds max_replicas 50",
            )
        ],
        verification="",
        escalation_reason="the fix needs more replicas than policy allows",
        human_steps=["Check the node pool capacity in shop", "Raise max_replicas or scale by hand"],
    )

    result = mailer_for(port).send_report(report)

    assert result.delivered
    message = recorder.message()
    assert message["Subject"].startswith("[AMOS][kubernetes] ESCALATED: ")
    text, html = parts(message)
    assert "[refused] scale Deployment/web -n shop" in text
    assert "Refused because: 60 replicas exceeds max_replicas 50" in text
    assert "Why a person is needed: the fix needs more replicas than policy allows" in text
    assert "1. Check the node pool capacity in shop" in text
    assert "2. Raise max_replicas or scale by hand" in text
    assert '<li style="white-space:pre-wrap;">Raise max_replicas or scale by hand</li>' in html


@pytest.mark.parametrize("outcome", list(Outcome))
@pytest.mark.parametrize("status", list(ActionStatus))
def test_every_outcome_and_action_status_renders(outcome: Outcome, status: ActionStatus) -> None:
    action = ActionRecord(verb="patch", target=WEB, summary="s", status=status, reason="r", diff=DIFF)
    report = make_report(outcome, actions=[action], rolled_back=outcome is Outcome.ROLLED_BACK)

    rendered = render_report(report)

    label = outcome.value.replace("_", " ").upper()
    assert rendered.subject == f"[AMOS][kubernetes] {label}: OOMKilled on Deployment/web -n shop"
    assert f"[{status.value.replace('_', ' ')}] patch" in rendered.text
    assert f"[{status.value.replace('_', ' ')}]" in rendered.html


def test_a_permanent_refusal_is_not_retried_and_does_not_raise(smtp_server: ServerFactory) -> None:
    recorder, port = smtp_server("550 5.7.1 message rejected")

    result = mailer_for(port).send_report(make_report())

    assert not result.delivered
    assert result.attempts == 1 and recorder.data_calls == 1
    assert result.error is not None and "550" in result.error


def test_a_transient_refusal_is_retried_up_to_the_limit(smtp_server: ServerFactory) -> None:
    recorder, port = smtp_server("451 4.3.0 try again later")

    result = mailer_for(port).send_report(make_report())

    assert not result.delivered
    assert result.attempts == FAST.attempts and recorder.data_calls == FAST.attempts
    assert result.error is not None and "451" in result.error


def test_a_transient_refusal_then_success_is_delivered(smtp_server: ServerFactory) -> None:
    recorder, port = smtp_server("421 4.7.0 busy", "250 OK")

    result = mailer_for(port).send_report(make_report())

    assert result.delivered and result.attempts == 2
    assert recorder.data_calls == 2 and len(recorder.accepted) == 1


def test_an_unreachable_server_fails_quickly_without_raising() -> None:
    started = time.monotonic()

    result = mailer_for(free_port()).send_report(make_report())

    assert not result.delivered
    assert result.attempts == FAST.attempts
    assert result.error is not None and "ConnectionRefused" in result.error
    assert time.monotonic() - started < 2


def test_without_a_server_or_recipient_nothing_is_tried() -> None:
    for settings in ({"smtp_host": None}, {"engineer_email": None}):
        result = mailer_for(25, **settings).send_report(make_report())

        assert not result.delivered and result.attempts == 0
        assert result.error is not None and result.error.startswith("e-mail not configured")


def test_known_secrets_and_secret_shapes_never_reach_the_mailbox(smtp_server: ServerFactory) -> None:
    recorder, port = smtp_server()
    secret = "Db-S3cret-Value-77"
    redactor = Redactor.from_secret_data({"password": base64.b64encode(secret.encode()).decode()})
    report = make_report(
        root_cause=f"the app connects with the old password {secret}",
        evidence=["log: connecting to postgres with password=hunter2", f"env DB_PASSWORD resolved to {secret}"],
        actions=[
            ActionRecord(
                verb="patch",
                target=WEB,
                summary="point at the new secret",
                status=ActionStatus.DRY_RUN,
                diff=f"-value: {secret}\n+valueFrom: secretKeyRef db-creds/password",
            )
        ],
        human_steps=[f"rotate {secret}"],
    )

    result = mailer_for(port).send_report(report, redactor)

    assert result.delivered
    raw = recorder.accepted[0].content
    assert isinstance(raw, bytes)
    text, html = parts(recorder.message())
    for leaked in (secret, "hunter2"):
        assert leaked not in text and leaked not in html
        assert leaked.encode() not in raw
    assert "password=[REDACTED]" in text and "-value: [REDACTED]" in text


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("password", ["mail-P4ss-word!", "mail-P4ss-Wörd!"], ids=["ascii", "utf-8"])
def test_login_works_and_the_password_is_never_logged(
    smtp_server: ServerFactory, caplog: pytest.LogCaptureFixture, password: str
) -> None:
    recorder, port = smtp_server(credentials=("amos", password))
    caplog.set_level(logging.DEBUG, logger="notifications")

    good = mailer_for(port, smtp_username="amos", smtp_password=password).send_report(make_report())
    bad = mailer_for(port, smtp_username="amos", smtp_password=password + "x").send_report(make_report())

    assert good.delivered and len(recorder.accepted) == 1
    assert recorder.logins and set(recorder.logins) == {b"amos"}  # the server really checked credentials
    assert not bad.delivered and bad.attempts == 1  # a wrong password is not retried
    assert bad.error is not None and "535" in bad.error and password not in bad.error
    assert "delivered" in caplog.text and "not delivered" in caplog.text
    assert password not in caplog.text
