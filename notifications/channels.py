"""Which channels exist and which reports each one gets: configuration, per-channel outcome filters,
routing by namespace, and the e-mail channel (the Mailer behind the `Channel` contract).

Configuration comes from `Settings` where it has the field (`ChannelSettings.from_settings`) and from the
environment otherwise, under the same `AMOS_` names and formats (outcome lists comma-separated or JSON;
`AMOS_NOTIFY_ROUTES` is a JSON map of namespace to channel names).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from core.config import ConfigError, Settings
from core.report import IncidentReport, Outcome
from notifications.delivery import Channel, ChannelName, Delivery, DeliveryStatus
from notifications.mailer import Mailer
from notifications.render import DEFAULT_CLUSTER, render_report
from notifications.slack import SlackChannel
from notifications.webhook import WebhookChannel


def _outcome_list(value: Any) -> Any:
    """`escalated,approval_needed` or a JSON list, as `Settings` reads lists; empty means every outcome."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return value  # reported by the list validation with the raw text
        else:
            value = [item.strip() for item in text.split(",") if item.strip()]
    return value or None


Outcomes = Annotated[list[Outcome] | None, NoDecode, BeforeValidator(_outcome_list)]
SETTINGS_FIELDS = (
    "cluster_name",
    "slack_webhook_url",
    "webhook_url",
    "webhook_secret",
    "email_outcomes",
    "slack_outcomes",
    "webhook_outcomes",
    "notify_routes",
    "notify_timeout_seconds",
)


class ChannelSettings(BaseSettings):
    """Chat and webhook channels, filters and routes; the SMTP server itself is configured by `Settings`."""

    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="ignore")

    cluster_name: str = Field(default=DEFAULT_CLUSTER, min_length=1, max_length=63, pattern=r"^[\w.-]+$")
    slack_webhook_url: SecretStr | None = None
    webhook_url: str | None = Field(default=None, pattern=r"^https?://")
    webhook_secret: SecretStr | None = None
    email_outcomes: Outcomes = Field(default=None, description="outcomes mailed; unset or empty means all")
    slack_outcomes: Outcomes = None
    webhook_outcomes: Outcomes = None
    notify_routes: dict[str, list[ChannelName]] = Field(
        default_factory=dict, description="namespace -> the only channels its reports go to; others get all"
    )
    notify_timeout_seconds: float = Field(default=10.0, gt=0, le=300)

    @classmethod
    def from_env(cls, **values: Any) -> ChannelSettings:
        """Read the environment (`values` win); a wrong value is one `ConfigError` line naming the variable."""
        try:
            return cls(**values)
        except ValidationError as error:
            first = error.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "channels"
            raise ConfigError(f"invalid setting 'AMOS_{field.upper()}': {first['msg']}") from None
        except SettingsError as error:  # a value that is not the JSON a map needs
            raise ConfigError(f"invalid notification setting: {error}") from None

    @classmethod
    def from_settings(cls, settings: Settings) -> ChannelSettings:
        """`Settings` values (config file or environment) where `Settings` has the field, the environment otherwise."""
        values = {name: getattr(settings, name) for name in SETTINGS_FIELDS if getattr(settings, name, None)}
        return cls.from_env(**values)

    def outcomes(self, channel: ChannelName) -> list[Outcome] | None:
        return {
            ChannelName.EMAIL: self.email_outcomes,
            ChannelName.SLACK: self.slack_outcomes,
            ChannelName.WEBHOOK: self.webhook_outcomes,
        }[channel]


class EmailChannel:
    """The Mailer, one try at a time; the Message-ID carries the delivery id."""

    def __init__(self, mailer: Mailer) -> None:
        self._mailer = mailer

    @property
    def name(self) -> ChannelName:
        return ChannelName.EMAIL

    def deliver(self, report: IncidentReport, delivery_id: str) -> Delivery:
        try:
            rendered = render_report(report, cluster=self._mailer.cluster)
        except Exception as error:  # noqa: BLE001 - a template bug is a permanent failure of this report, not a crash
            return Delivery(status=DeliveryStatus.PERMANENT, error=f"could not render the report: {error}")
        return self._mailer.send_once(rendered, delivery_id)


class ChannelSet:
    """The configured channels and the rule deciding which of them a report goes to."""

    def __init__(
        self,
        channels: Sequence[Channel],
        outcomes: Mapping[ChannelName, Collection[Outcome] | None] | None = None,
        routes: Mapping[str, Collection[ChannelName]] | None = None,
    ) -> None:
        self._channels = {channel.name: channel for channel in channels}
        self._outcomes = dict(outcomes or {})
        self._routes = {namespace: set(names) for namespace, names in (routes or {}).items()}

    @classmethod
    def from_settings(cls, settings: Settings, channel_settings: ChannelSettings) -> ChannelSet:
        cluster = channel_settings.cluster_name
        timeout = channel_settings.notify_timeout_seconds
        channels: list[Channel] = []
        mailer = Mailer(settings, cluster=cluster)
        if mailer.configured:
            channels.append(EmailChannel(mailer))
        if channel_settings.slack_webhook_url is not None:
            channels.append(SlackChannel(channel_settings.slack_webhook_url, cluster=cluster, timeout=timeout))
        if channel_settings.webhook_url:
            channels.append(
                WebhookChannel(
                    channel_settings.webhook_url, channel_settings.webhook_secret, cluster=cluster, timeout=timeout
                )
            )
        return cls(
            channels,
            outcomes={channel.name: channel_settings.outcomes(channel.name) for channel in channels},
            routes=channel_settings.notify_routes,
        )

    @property
    def names(self) -> list[ChannelName]:
        return list(self._channels)

    def get(self, name: ChannelName) -> Channel:
        return self._channels[name]

    def targets(self, report: IncidentReport) -> list[ChannelName]:
        """The channels `report` goes to: its namespace's route (if any), then each channel's outcome filter."""
        namespace = report.outage.namespace if report.outage is not None else report.incident.workload.namespace
        routed = self._routes.get(namespace)
        return [
            name
            for name in self._channels
            if (routed is None or name in routed)
            and (self._outcomes.get(name) is None or report.outcome in (self._outcomes.get(name) or ()))
        ]
