"""One HTTP POST for a chat or webhook channel, with its result classified for the outbox."""

from __future__ import annotations

import httpx

from core.redaction import Redactor
from notifications.delivery import Delivery, DeliveryStatus

MAX_ERROR_BODY = 200


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, scrub: Redactor) -> Delivery:
    """POST `body`; 2xx delivered, 408/429/5xx and network errors transient, any other status permanent.

    `scrub` removes the URL's secret parts (a Slack webhook URL is a credential) from every error text.
    """
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as error:  # refused, reset, timed out, bad TLS: all worth another try later
        return Delivery(status=DeliveryStatus.TRANSIENT, error=scrub.redact_text(f"{type(error).__name__}: {error}"))
    if response.is_success:
        return Delivery(status=DeliveryStatus.DELIVERED)
    detail = scrub.redact_text(f"HTTP {response.status_code}: {response.text[:MAX_ERROR_BODY]}".strip())
    transient = response.status_code in (408, 429) or response.status_code >= 500
    return Delivery(status=DeliveryStatus.TRANSIENT if transient else DeliveryStatus.PERMANENT, error=detail)
