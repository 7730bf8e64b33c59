"""Slack incoming webhook: the mail's first screen as Block Kit blocks (header, fields, steps, kubectl)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from core.redaction import Redactor, clip_text
from core.report import IncidentReport
from notifications.delivery import ChannelName, Delivery
from notifications.http_post import post
from notifications.summary import ReportSummary, summarize

MAX_HEADER_CHARS = 150  # Block Kit limits
MAX_SECTION_CHARS = 2900
MAX_FIELD_CHARS = 1900
MAX_LIST_SECTIONS = 10


def escape(text: str) -> str:
    """Slack mrkdwn reserves &, < and >."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip_text(text, MAX_SECTION_CHARS, keep="start")}}


def _list_sections(title: str, lines: list[str]) -> list[dict[str, Any]]:
    """A long list split over several sections, so every item is shown (up to Slack's block budget)."""
    sections: list[str] = [f"*{title}*"]
    for line in lines:
        item = f"• {escape(line)}"
        if len(sections[-1]) + len(item) + 1 > MAX_SECTION_CHARS:
            sections.append(item)
        else:
            sections[-1] += "\n" + item
    return [_section(text) for text in sections[:MAX_LIST_SECTIONS]]


def blocks(report: IncidentReport, summary: ReportSummary) -> list[dict[str, Any]]:
    fields = [
        ("Workload", report.outage.scope if report.outage else summary.workload),
        ("Cluster", summary.cluster),
        ("Outcome", summary.label),
        ("Severity", summary.severity.label),
        ("Seen", summary.seen),
    ]
    if summary.attempted:
        fields.append(("Attempt", f"{report.attempt} of {report.max_attempts}"))
    result: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": clip_text(summary.subject, MAX_HEADER_CHARS, keep="start")},
        },
        _section(f"*{summary.label}*: {escape(summary.headline)}"),
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": clip_text(f"*{name}*\n{escape(value)}", MAX_FIELD_CHARS, keep="start")}
                for name, value in fields
            ],
        },
        *_list_sections("What AMOS did", summary.did),
    ]
    must_do = ([f"Why a person is needed: {summary.why}"] if summary.why else []) + summary.must_do
    result += _list_sections("What you must do now", must_do)
    commands = "*Inspect*\n```" + escape("\n".join(summary.inspect)) + "```"
    if summary.undo:
        commands += "\n*Undo AMOS's change*\n```" + escape("\n".join(summary.undo)) + "```"
    result.append(_section(commands))
    if report.outage is not None:
        result += _list_sections(
            f"Failing workloads ({len(report.outage.failing)} of {report.outage.total_workloads})",
            [
                report.outage.label(item)
                + (f" [{item.kind.value}]" if item.kind else "")
                + f": {item.diagnosis or 'not diagnosed'}"
                for item in report.outage.failing
            ],
        )
    for action in summary.proposed:
        result.append(_section(f"*Proposed:* {escape(action.summary)}\n```{escape(action.diff or '(no diff)')}```"))
    result.append(_section(f"*Root cause*\n{escape(report.root_cause or 'Not determined.')}"))
    footer = f"incident {report.incident.id}" + (f" · diagnosis by {report.model}" if report.model else "")
    result.append({"type": "context", "elements": [{"type": "mrkdwn", "text": escape(footer)}]})
    return result


class SlackChannel:
    """Posts to one Slack incoming webhook (the URL is the credential: it is kept out of every error text)."""

    def __init__(self, url: SecretStr, *, cluster: str, timeout: float = 10.0) -> None:
        self._url = url
        self._cluster = cluster
        self._timeout = timeout
        secret_path = urlsplit(url.get_secret_value()).path
        self._scrub = Redactor([url.get_secret_value(), secret_path])

    @property
    def name(self) -> ChannelName:
        return ChannelName.SLACK

    def payload(self, report: IncidentReport) -> dict[str, Any]:
        safe = Redactor().redact(report)
        summary = summarize(safe, self._cluster)
        return {"text": summary.subject, "blocks": blocks(safe, summary)}

    def deliver(self, report: IncidentReport, delivery_id: str) -> Delivery:
        body = json.dumps(self.payload(report)).encode()
        return post(
            self._url.get_secret_value(),
            body,
            {"Content-Type": "application/json"},
            timeout=self._timeout,
            scrub=self._scrub,
        )
