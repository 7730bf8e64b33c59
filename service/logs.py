"""Log set-up: plain lines for people, JSON lines for log pipelines, the incident id on both.

Every record passes the shared redaction rules before it is written, and one record is one
line: in the plain format newlines and other control characters are escaped, so a value
(a pod's log line, a model's answer) cannot forge a record of its own. A failed Kubernetes call
logged with its traceback (a background task catching whatever it hit) is written as one line
naming the call: an outage or a missing permission is not a bug, and the call was counted already.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from core import api_errors
from core.logcontext import IncidentFilter
from core.redaction import Redactor

PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(incident)s] %(message)s"
# C0 and C1 controls and the characters some viewers break lines at.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    r"""`\n` and every other control character written as an escape, so the text stays on one line."""
    return _CONTROL.sub(lambda match: _ESCAPES.get(match[0]) or f"\\x{ord(match[0]):02x}", text)


class RedactingFilter(logging.Filter):
    """Redacts the message, the exception and the stack of every record, once, before any formatter runs."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a bad format string: still log it, redacted, instead of raising
            message = f"{record.msg} {record.args}"
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and api_errors.is_call_failure(error):
            message, record.exc_info, record.exc_text = f"{message}: {error}", None, None
        record.msg = self.redactor.redact_text(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact_text(record.exc_text)  # what formatters print
        if record.stack_info:
            record.stack_info = self.redactor.redact_text(record.stack_info)
        return True


class PlainFormatter(logging.Formatter):
    """The plain line, with the message, exception and stack escaped onto it."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return escape_controls(super().format(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "incident": getattr(record, "incident", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["error"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry)


def configure(json_lines: bool, level: int = logging.INFO, redactor: Redactor | None = None) -> None:
    """One stderr handler for the whole process; pass the service's redactor so the Secret values it learned are hidden too."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(IncidentFilter())
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "kubernetes", "httpx", "google_adk", "google_genai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
