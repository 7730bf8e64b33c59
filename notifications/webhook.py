"""A generic JSON webhook: the report model as JSON, signed with HMAC-SHA256 so receivers can trust it.

Headers: `X-AMOS-Delivery` (the same id on every retry of one report, for receivers to deduplicate),
`X-AMOS-Signature-256: sha256=<hex HMAC of the body with the shared secret>` (GitHub's scheme),
`X-AMOS-Event: report`.
"""

from __future__ import annotations

import hashlib
import hmac

from pydantic import BaseModel, SecretStr

from core.redaction import Redactor
from core.report import IncidentReport
from notifications.delivery import ChannelName, Delivery
from notifications.http_post import post
from notifications.summary import summarize

DELIVERY_HEADER = "X-AMOS-Delivery"
SIGNATURE_HEADER = "X-AMOS-Signature-256"
PAYLOAD_VERSION = 1


class WebhookPayload(BaseModel):
    """What the webhook receives: a few routing fields, then the whole (redacted) report."""

    version: int = PAYLOAD_VERSION
    delivery_id: str
    cluster: str
    subject: str
    severity: str
    outcome: str
    report: IncidentReport


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    """POSTs each report to one URL."""

    def __init__(self, url: str, secret: SecretStr | None, *, cluster: str, timeout: float = 10.0) -> None:
        self._url = url
        self._secret = secret
        self._cluster = cluster
        self._timeout = timeout
        self._scrub = Redactor([secret.get_secret_value()] if secret else [])

    @property
    def name(self) -> ChannelName:
        return ChannelName.WEBHOOK

    def payload(self, report: IncidentReport, delivery_id: str) -> bytes:
        safe = Redactor().redact(report)
        summary = summarize(safe, self._cluster)
        payload = WebhookPayload(
            delivery_id=delivery_id,
            cluster=self._cluster,
            subject=summary.subject,
            severity=summary.severity.label,
            outcome=safe.outcome.value,
            report=safe,
        )
        return payload.model_dump_json().encode()

    def deliver(self, report: IncidentReport, delivery_id: str) -> Delivery:
        body = self.payload(report, delivery_id)
        headers = {"Content-Type": "application/json", "X-AMOS-Event": "report", DELIVERY_HEADER: delivery_id}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(body, self._secret.get_secret_value())
        return post(self._url, body, headers, timeout=self._timeout, scrub=self._scrub)
