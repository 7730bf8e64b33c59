"""Tells engineers what AMOS did: renders an incident report for e-mail, Slack and a JSON webhook, and delivers
it through a durable outbox in the cluster (per-channel threads, back-off, dedup by delivery key).

Everything is redacted before rendering, and delivery never raises: it returns a result.
"""

from notifications.channels import ChannelSet, ChannelSettings, EmailChannel
from notifications.delivery import Channel, ChannelName, Delivery, DeliveryStatus
from notifications.mailer import DeliveryResult, Mailer, RetryPolicy
from notifications.outbox import Outbox, OutboxError, OutboxPolicy, OutboxStats
from notifications.render import RenderedMessage, render_report
from notifications.sample import TestNotifyResult, run_test_notify, sample_report, send_test_notification
from notifications.slack import SlackChannel
from notifications.webhook import WebhookChannel

__all__ = [
    "Channel",
    "ChannelName",
    "ChannelSet",
    "ChannelSettings",
    "Delivery",
    "DeliveryResult",
    "DeliveryStatus",
    "EmailChannel",
    "Mailer",
    "Outbox",
    "OutboxError",
    "OutboxPolicy",
    "OutboxStats",
    "RenderedMessage",
    "RetryPolicy",
    "SlackChannel",
    "TestNotifyResult",
    "WebhookChannel",
    "render_report",
    "run_test_notify",
    "sample_report",
    "send_test_notification",
]
