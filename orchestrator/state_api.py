"""Raw calls on AMOS's own state objects: JSON in and out, one error type naming the call.

Every call has a request timeout, and a call that fails for a passing reason (no connection, a
timeout, 5xx, 429) is retried with back-off for up to `RETRY_SECONDS`, so an API server restart
does not lose a state write; what still fails becomes one `StoreError` naming the call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from core import api_errors
from tools.results import api_status

REQUEST_TIMEOUT_SECONDS = 30.0
RETRY_SECONDS = 30.0

# Labels and annotations of state objects (besides core.k8s MANAGED_BY_LABEL and RECORD_LABEL), for `kubectl get -l`.
FINGERPRINT_LABEL = "amos.io/fingerprint"
PHASE_LABEL = "amos.io/phase"
WORKLOAD_NAMESPACE_LABEL = "amos.io/workload-namespace"
WORKLOAD_KIND_LABEL = "amos.io/workload-kind"
WORKLOAD_ANNOTATION = "amos.io/workload"


class StoreError(Exception):
    """A state read or write failed; `status` is the HTTP status when the API server answered."""

    def __init__(self, call: str, cause: BaseException) -> None:
        self.status, detail = api_status(cause)
        super().__init__(f"{call} failed: {detail}")


def passing(error: BaseException) -> bool:
    """A failure worth retrying: no answer at all, a timeout, an overloaded or restarting server."""
    status = getattr(error, "status", None)
    return status is None or status >= 500 or status == 429


def call_json(call: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a kubernetes client method without its model classes; the answer as plain JSON.

    Each failed attempt is reported to the observer of the ApiClient `method` is bound to (see `core.api_errors`).
    """
    for attempt in Retrying(
        retry=retry_if_exception(lambda error: isinstance(error, StoreError) and passing(error)),
        wait=wait_exponential(multiplier=0.25, max=4),
        stop=stop_after_delay(RETRY_SECONDS),
        reraise=True,
    ):
        with attempt:
            try:
                response = method(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
                raw = response.data
            except Exception as error:  # every failure becomes one error type naming the call
                api_errors.report(getattr(getattr(method, "__self__", None), "api_client", None), call, error)
                raise StoreError(call, error) from error
            return json.loads(raw) if raw else None
    raise AssertionError("unreachable")  # Retrying either returns, or re-raises the last error


def read_json(call: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any] | None:
    """A read of a state object where its absence is an answer: the object as JSON, or None for 404."""
    try:
        found: dict[str, Any] = call_json(call, method, *args, **kwargs)
    except StoreError as error:
        if error.status == 404:
            return None
        raise
    return found
