"""Where a failed Kubernetes API call is told: to the observer attached to the client that made it.

The central places that call the API (cluster access for the tools, the state records' calls, the watch
streams, the lease) each `report` a failed call, naming the operation; the service attaches an observer
to its ApiClient that writes one log line and counts the call. A client without an observer (one-shot
commands, tests) tells no one. Either way the caller still gets the error: reporting never changes what
a call returns or raises.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)

ApiErrorObserver = Callable[[str, BaseException], None]  # (operation, the error the call raised)
CALL_FAILURES = (ApiException, HTTPError, OSError)  # what a failed call raises: an answer, or none in time

_observers: weakref.WeakKeyDictionary[object, ApiErrorObserver] = weakref.WeakKeyDictionary()


def attach(api_client: object, observer: ApiErrorObserver) -> None:
    """Every failed call made through `api_client` from now on is told to `observer` (one per client)."""
    _observers[api_client] = observer


def report(api_client: object | None, operation: str, error: BaseException) -> None:
    """Tell the client's observer, if it has one, that `operation` failed; an observer's own failure is logged."""
    observer = _observers.get(api_client) if api_client is not None else None
    if observer is None:
        return
    try:
        observer(operation, error)
    except Exception:  # the caller's error matters more than the observer's
        log.exception("the API error observer failed on %s", operation)


def is_call_failure(error: BaseException) -> bool:
    """Whether `error` is a failed Kubernetes call, raised as is or wrapped by the layer that made it."""
    return isinstance(error, CALL_FAILURES) or isinstance(error.__cause__, CALL_FAILURES)
