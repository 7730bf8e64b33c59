"""Delivers rendered notifications by SMTP and never raises.

An e-mail that cannot be sent must not stop a remediation, so every outcome is a result the
caller can record: `send` retries transient failures itself (`DeliveryResult`), `send_once`
tries once and says whether a retry can help (`Delivery`, for the outbox, which owns retries).
Both block: never call them on an incident thread.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import smtplib
import ssl
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from pydantic import BaseModel, ConfigDict, Field
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from core.config import Settings
from core.redaction import Redactor
from core.report import IncidentReport, Severity
from notifications.delivery import Delivery, DeliveryStatus
from notifications.render import DEFAULT_CLUSTER, RenderedMessage, render_report

logger = logging.getLogger(__name__)

# RFC 5322 allows 998 characters a line: a subject that fits is never folded, so no strict parser sees a
# continuation line right after `Subject:`; longer ones fold at spaces.
MAIL_POLICY = SMTP.clone(max_line_length=998)
_PRIORITY = {
    Severity.ACTION_REQUIRED: ("1 (Highest)", "high"),
    Severity.NOTICE: ("3 (Normal)", "normal"),
    Severity.INFO: ("5 (Lowest)", "low"),
}


class RetryPolicy(BaseModel):
    """How hard to try: exponential backoff, bounded both in attempts and in total time."""

    model_config = ConfigDict(frozen=True)

    attempts: int = Field(default=4, ge=1, le=20)
    initial_wait_seconds: float = Field(default=2.0, ge=0)
    max_wait_seconds: float = Field(default=30.0, ge=0)
    max_total_seconds: float = Field(default=120.0, gt=0)


class DeliveryResult(BaseModel):
    """What became of one e-mail; `error` never holds credentials."""

    model_config = ConfigDict(frozen=True)

    delivered: bool
    attempts: int = 0
    error: str | None = None


class Mailer:
    """Sends notifications to `engineer_email` through the SMTP server described in the settings."""

    def __init__(self, settings: Settings, retry: RetryPolicy | None = None, *, cluster: str = DEFAULT_CLUSTER) -> None:
        self._settings = settings
        self._retry = retry or RetryPolicy()
        self.cluster = cluster
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
        # Server replies and exception texts are passed through this before they are logged or returned.
        self._scrub = Redactor([password])

    @property
    def configured(self) -> bool:
        return bool(self._settings.smtp_host and self._settings.engineer_email)

    def send_report(self, report: IncidentReport, redactor: Redactor | None = None) -> DeliveryResult:
        """Render and send `report`; a template error is reported like a delivery error."""
        if not self.configured:
            return self._not_configured()
        try:
            rendered = render_report(report, redactor, cluster=self.cluster)
        except Exception as error:  # a template bug must not stop the remediation that is reporting
            logger.exception("could not render the report of incident %s", report.incident.id)
            return DeliveryResult(delivered=False, error=f"could not render the report: {self._describe(error)}")
        return self.send(rendered)

    def send(self, rendered: RenderedMessage) -> DeliveryResult:
        if not self.configured:
            return self._not_configured()
        attempts = 0

        def attempt() -> dict[str, tuple[int, bytes]]:
            nonlocal attempts
            attempts += 1
            return self._deliver(message)

        retrying = Retrying(
            stop=stop_after_attempt(self._retry.attempts) | stop_after_delay(self._retry.max_total_seconds),
            wait=wait_exponential(multiplier=self._retry.initial_wait_seconds, max=self._retry.max_wait_seconds),
            retry=retry_if_exception(_is_transient),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            message = self.build_message(rendered)
            refused = retrying(attempt)
        except Exception as error:  # noqa: BLE001 - the caller is mid-remediation: report, never raise
            reason = self._describe(error)
            logger.error("e-mail %r not delivered after %d attempt(s): %s", rendered.subject, attempts, reason)
            return DeliveryResult(delivered=False, attempts=attempts, error=reason)
        if refused:
            reason = f"refused for {', '.join(sorted(refused))}"
            logger.warning("e-mail %r delivered, but %s", rendered.subject, reason)
            return DeliveryResult(delivered=True, attempts=attempts, error=reason)
        logger.info("e-mail %r delivered to %s (attempt %d)", rendered.subject, message["To"], attempts)
        return DeliveryResult(delivered=True, attempts=attempts)

    def send_once(self, rendered: RenderedMessage, delivery_id: str) -> Delivery:
        """One try; the Message-ID derives from `delivery_id`, so a mailbox can drop a re-sent duplicate."""
        if not self.configured:
            return Delivery(status=DeliveryStatus.PERMANENT, error=self._not_configured().error or "")
        try:
            refused = self._deliver(self.build_message(rendered, delivery_id))
        except Exception as error:  # noqa: BLE001 - classified, never raised: the outbox decides what comes next
            status = DeliveryStatus.TRANSIENT if _is_transient(error) else DeliveryStatus.PERMANENT
            return Delivery(status=status, error=self._describe(error))
        if refused:
            logger.warning("e-mail %r delivered, but refused for %s", rendered.subject, ", ".join(sorted(refused)))
        return Delivery(status=DeliveryStatus.DELIVERED)

    def build_message(self, rendered: RenderedMessage, delivery_id: str | None = None) -> EmailMessage:
        """A multipart/alternative message: plain text first, HTML preferred by clients that can show it."""
        sender = self._settings.from_email
        domain = sender.rpartition("@")[2] or "localhost"
        message = EmailMessage(policy=MAIL_POLICY)
        message["Subject"] = rendered.subject
        message["From"] = sender
        message["To"] = self._settings.engineer_email or ""
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = f"<amos.{delivery_id}@{domain}>" if delivery_id else make_msgid(domain=domain)
        priority, importance = _PRIORITY[rendered.severity]
        message["X-Priority"] = priority
        message["Importance"] = importance
        message["X-AMOS-Severity"] = rendered.severity.label
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        return message

    def _deliver(self, message: EmailMessage) -> dict[str, tuple[int, bytes]]:
        settings = self._settings
        host = settings.smtp_host or ""
        timeout = settings.smtp_timeout_seconds
        client: smtplib.SMTP
        if settings.smtp_security == "tls":
            client = smtplib.SMTP_SSL(host, settings.smtp_port, timeout=timeout, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(host, settings.smtp_port, timeout=timeout)
        try:
            if settings.smtp_security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                _login(client, settings.smtp_username, password)
            return client.send_message(message)
        finally:
            # Not `with client`: a failed QUIT after an accepted message would raise, be retried, and send it twice.
            with contextlib.suppress(OSError):
                client.quit()
            client.close()

    def _not_configured(self) -> DeliveryResult:
        missing = [name for name in ("smtp_host", "engineer_email") if not getattr(self._settings, name)]
        reason = f"e-mail not configured: {' and '.join(missing)} unset"
        logger.info("no e-mail sent: %s", reason)
        return DeliveryResult(delivered=False, attempts=0, error=reason)

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        logger.warning(
            "e-mail attempt %d failed (%s); retrying in %.1fs",
            state.attempt_number,
            self._describe(error) if error is not None else "no error recorded",
            state.next_action.sleep if state.next_action is not None else 0.0,
        )

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, smtplib.SMTPResponseException):
            reply = error.smtp_error
            text = f"SMTP {error.smtp_code} {reply.decode(errors='replace') if isinstance(reply, bytes) else reply}"
        elif isinstance(error, smtplib.SMTPRecipientsRefused):
            text = "all recipients refused: " + ", ".join(
                f"{address} ({code} {reply.decode(errors='replace')})"
                for address, (code, reply) in error.recipients.items()
            )
        else:
            text = f"{type(error).__name__}: {error}"
        return self._scrub.redact_text(text)


def _login(client: smtplib.SMTP, username: str, password: str) -> None:
    if f"{username}{password}".isascii():
        client.login(username, password)
        return
    # smtplib encodes credentials as ASCII; AUTH PLAIN (RFC 4616) carries UTF-8.
    client.ehlo_or_helo_if_needed()
    token = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    code, reply = client.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, reply)


def _is_transient(error: BaseException) -> bool:
    """A 4xx reply or a network failure may pass on retry; a 5xx reply (bad address, bad password) will not."""
    if isinstance(error, smtplib.SMTPResponseException):
        return 400 <= error.smtp_code < 500
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(400 <= code < 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPNotSupportedError | ssl.SSLCertVerificationError):
        return False  # STARTTLS not offered, or a certificate we do not trust: a configuration error
    return isinstance(error, OSError)  # refused, reset, timed out, disconnected (SMTPException is an OSError)
