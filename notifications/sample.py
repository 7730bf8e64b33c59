"""`test-notify`: one sample report sent straight to every configured channel, to prove the configuration.

It bypasses the outbox and the channels' outcome filters and routes on purpose: the person running it wants
to see each channel answer now, with its error if it does not.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from core.config import Settings
from core.models import Evidence, FaultKind, Incident, ObjectRef
from core.report import ActionRecord, ActionStatus, IncidentReport, Outcome
from notifications.channels import ChannelSet, ChannelSettings
from notifications.delivery import ChannelName, DeliveryStatus

NO_CHANNEL = (
    "no notification channel is configured: set AMOS_SMTP_HOST and AMOS_ENGINEER_EMAIL, "
    "AMOS_SLACK_WEBHOOK_URL or AMOS_WEBHOOK_URL"
)


class TestNotifyResult(BaseModel):
    """What one channel answered to the sample report."""

    __test__ = False  # not a pytest class, despite the name
    model_config = ConfigDict(frozen=True)

    channel: ChannelName
    status: DeliveryStatus
    error: str = ""


def sample_report(now: datetime | None = None) -> IncidentReport:
    """A realistic fixed OOMKilled report on `Deployment/amos-test-notify`, marked as a test everywhere."""
    now = now or datetime.now(UTC)
    workload = ObjectRef(kind="Deployment", namespace="amos-test", name="amos-test-notify")
    incident = Incident(
        id=f"test-{uuid.uuid4().hex[:8]}",
        fingerprint="0000000000000000",
        kind=FaultKind.OOM_KILLED,
        workload=workload,
        first_seen=now - timedelta(minutes=2),
        last_seen=now - timedelta(minutes=1),
        evidence=[Evidence(reason="OOMKilled", message="test notification: nothing is broken", exit_code=137)],
    )
    return IncidentReport(
        incident=incident,
        outcome=Outcome.FIXED,
        attempt=1,
        max_attempts=2,
        root_cause="This is a test notification from `python main.py test-notify`; no workload is affected.",
        actions=[
            ActionRecord(
                verb="patch",
                target=workload,
                summary="raise memory limit to 256Mi (sample)",
                status=ActionStatus.APPLIED,
                diff="--- before\n+++ after\n-memory: 128Mi\n+memory: 256Mi",
            )
        ],
        verification="sample: 1/1 pods ready",
        revision_before=1,
        model="test-notify",
        started_at=now - timedelta(minutes=1),
        finished_at=now,
    )


def send_test_notification(channels: ChannelSet) -> list[TestNotifyResult]:
    """Send `sample_report()` to every configured channel, one try each; one result per channel."""
    report = sample_report()
    results: list[TestNotifyResult] = []
    for name in channels.names:
        delivery = channels.get(name).deliver(report, f"test-{uuid.uuid4().hex}")
        results.append(TestNotifyResult(channel=name, status=delivery.status, error=delivery.error))
    return results


def run_test_notify(settings: Settings, say: Callable[[str], None] = print) -> int:
    """The `test-notify` command: one line per channel; 0 when every channel took the sample, 1 if one did not,
    2 when none is configured. A wrong channel setting raises `ConfigError` (one line naming it)."""
    channels = ChannelSet.from_settings(settings, ChannelSettings.from_settings(settings))
    if not channels.names:
        say(NO_CHANNEL)
        return 2
    results = send_test_notification(channels)
    for result in results:
        say(f"{result.channel.value}: {result.status.value}" + (f" ({result.error})" if result.error else ""))
    return 0 if all(result.status is DeliveryStatus.DELIVERED for result in results) else 1
