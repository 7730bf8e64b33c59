"""Turns an `IncidentReport` into the e-mail an engineer reads: a subject, a plain-text body and an HTML body.

The wording lives in `templates/`; the report is redacted before any template sees it.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict

from core.redaction import Redactor
from core.report import IncidentReport

_TEMPLATES = Path(__file__).parent / "templates"


class RenderedMessage(BaseModel):
    """A rendered notification, already redacted, ready for any transport."""

    model_config = ConfigDict(frozen=True)

    subject: str
    text: str
    html: str


def render_report(report: IncidentReport, redactor: Redactor | None = None) -> RenderedMessage:
    """Render `report`; without a redactor, the pattern rules still apply (they need no known values)."""
    safe = (redactor or Redactor()).redact(report)
    context = {"report": safe, "incident": safe.incident, "duration": _duration(safe.started_at, safe.finished_at)}
    return RenderedMessage(
        # A header must be one line, whatever ended up in a workload name.
        subject=" ".join(safe.subject.split()),
        text=_TEXT.get_template("report.txt.j2").render(context),
        html=_HTML.get_template("report.html.j2").render(context),
    )


def _environment(*, autoescape: bool) -> Environment:
    environment = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        undefined=StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["percent"] = _percent
    environment.filters["when"] = _when
    environment.filters["diff_lines"] = _diff_lines
    return environment


def _percent(value: float) -> str:
    return f"{value:.0%}"


def _when(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="seconds")


def _duration(started: datetime, finished: datetime) -> str:
    seconds = max(0, round((finished - started).total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def _diff_lines(diff: str) -> list[tuple[str, str]]:
    """Classify the lines of a before/after diff so the HTML body can colour them like `git diff`."""
    classified: list[tuple[str, str]] = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++", "@@")):
            kind = "header"
        elif line.startswith("+"):
            kind = "added"
        elif line.startswith("-"):
            kind = "removed"
        else:
            kind = "context"
        classified.append((kind, line))
    return classified


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)
