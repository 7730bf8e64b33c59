"""Turns an `IncidentReport` into the e-mail an engineer reads: a subject, a plain-text body and an HTML body.

The wording lives in `summary.py` and `templates/`; the report is redacted before any template sees it.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import BaseModel, ConfigDict

from core.redaction import Redactor
from core.report import IncidentReport, Severity
from notifications.summary import summarize

_TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_CLUSTER = "kubernetes"


class RenderedMessage(BaseModel):
    """A rendered notification, already redacted, ready for any transport."""

    model_config = ConfigDict(frozen=True)

    subject: str
    text: str
    html: str
    severity: Severity = Severity.NOTICE


def render_report(
    report: IncidentReport, redactor: Redactor | None = None, *, cluster: str = DEFAULT_CLUSTER
) -> RenderedMessage:
    """Render `report`; without a redactor, the pattern rules still apply (they need no known values)."""
    safe = (redactor or Redactor()).redact(report)
    summary = summarize(safe, cluster)
    context = {"report": safe, "incident": safe.incident, "s": summary}
    return RenderedMessage(
        subject=summary.subject,
        text=_TEXT.get_template("report.txt.j2").render(context),
        html=_HTML.get_template("report.html.j2").render(context),
        severity=summary.severity,
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
    environment.filters["diff_lines"] = _diff_lines
    return environment


def _percent(value: float) -> str:
    return f"{value:.0%}"


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
