"""What a failed Kubernetes API call does in the service: one log line, no traceback, and one count.

The service attaches an `ApiErrorLog` to its ApiClient (`core.api_errors.attach`); the central places that
call the API report each failed call to it. Not found, conflict and expired (404, 409, 410) are answers the
callers act on (a record not written yet, a concurrent writer, a watch to list again), and so is a 400 for
the logs of a container that has not started (a config error, an image that never pulled: the read tool
says "no logs yet"): counted like every failure, but logged at debug, so the log shows what needs a person.
"""

from __future__ import annotations

import logging

from core.redaction import Redactor
from service.metrics import Metrics
from tools.results import api_status

log = logging.getLogger("amos.kube")

ANSWERS = frozenset({404, 409, 410})
ANSWERS_OF = {"read_namespaced_pod_log": frozenset({400})}  # per operation, besides ANSWERS


class ApiErrorLog:
    def __init__(self, metrics: Metrics, redactor: Redactor) -> None:
        self._metrics = metrics
        self._redactor = redactor

    def __call__(self, operation: str, error: BaseException) -> None:
        status, detail = api_status(error)
        answered = status in ANSWERS or status in ANSWERS_OF.get(operation, frozenset())
        level = logging.DEBUG if answered else logging.WARNING
        log.log(level, "Kubernetes API call %s failed: %s", operation, self._redactor.redact_text(detail))
        self._metrics.record_api_error(operation, status)
