"""The incident a log line belongs to, carried in a context variable so every module's lines get it."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

current_incident: contextvars.ContextVar[str | None] = contextvars.ContextVar("amos_incident", default=None)


@contextmanager
def incident_scope(incident_id: str) -> Iterator[None]:
    token = current_incident.set(incident_id)
    try:
        yield
    finally:
        current_incident.reset(token)


class IncidentFilter(logging.Filter):
    """Stamps `record.incident` so formatters can print it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.incident = current_incident.get() or "-"
        return True
