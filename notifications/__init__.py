"""Tells engineers what AMOS did: renders an incident report as an e-mail and delivers it by SMTP.

Everything is redacted before rendering, and delivery never raises: it returns a `DeliveryResult`.
"""

from notifications.mailer import DeliveryResult, Mailer, RetryPolicy
from notifications.render import RenderedMessage, render_report

__all__ = ["DeliveryResult", "Mailer", "RenderedMessage", "RetryPolicy", "render_report"]
