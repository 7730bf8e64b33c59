"""The contract between the outbox and a channel: one try, and whether trying again can help."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from core.report import IncidentReport


class ChannelName(StrEnum):
    EMAIL = "email"
    SLACK = "slack"
    WEBHOOK = "webhook"


class DeliveryStatus(StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"  # may pass later: SMTP 4xx, connection errors, timeouts, HTTP 5xx/429
    PERMANENT = "permanent"  # will not pass by retrying: SMTP 5xx (535 bad credentials), HTTP 4xx


class Delivery(BaseModel):
    """The result of one try on one channel; `error` never holds credentials."""

    model_config = ConfigDict(frozen=True)

    status: DeliveryStatus
    error: str = ""

    @property
    def delivered(self) -> bool:
        return self.status is DeliveryStatus.DELIVERED


class Channel(Protocol):
    """One way to reach people. `deliver` blocks (never call it on an incident thread) and never raises."""

    @property
    def name(self) -> ChannelName: ...

    def deliver(self, report: IncidentReport, delivery_id: str) -> Delivery: ...
