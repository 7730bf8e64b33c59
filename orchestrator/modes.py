"""How far AMOS may go in a namespace: act (auto), propose and wait for a person (approve), or report (observe).

Teams adopt an autonomous fixer gradually, namespace by namespace: the namespace's label or
annotation `amos.io/mode` says which (a label is selectable with `kubectl get ns -l`), else the
`mode_default` setting. The namespace is read at most every `CACHE_SECONDS`.
"""

from __future__ import annotations

import logging
import threading
import time
from enum import StrEnum
from typing import Any

from kubernetes import client

from orchestrator.state_api import StoreError, call_json
from tools import objects

log = logging.getLogger(__name__)

MODE_KEY = "amos.io/mode"
CACHE_SECONDS = 10.0


class Mode(StrEnum):
    AUTO = "auto"  # fix, verify, restore, report
    APPROVE = "approve"  # diagnose, validate the fix, store it as a proposal, wait for a person's approval
    OBSERVE = "observe"  # detect, diagnose, report; never change anything


def mode_of(namespace: dict[str, Any] | None, default: Mode) -> Mode:
    """The namespace's mode from its label or annotation; an unknown value is the safest mode (observe)."""
    if namespace is None:
        return default
    value = objects.labels_of(namespace).get(MODE_KEY) or (objects.meta(namespace).get("annotations") or {}).get(
        MODE_KEY
    )
    if value is None:
        return default
    try:
        return Mode(str(value).strip().lower())
    except ValueError:
        log.warning(
            "namespace %s: %s=%r is not auto, approve or observe; observing only",
            objects.meta(namespace).get("name"),
            MODE_KEY,
            value,
        )
        return Mode.OBSERVE


class NamespaceModes:
    """Reads namespaces' modes (cached); an unreadable namespace gets the default mode."""

    def __init__(self, api_client: client.ApiClient, default: Mode) -> None:
        self._core = client.CoreV1Api(api_client)
        self.default = default
        self._cache: dict[str, tuple[float, Mode]] = {}
        self._lock = threading.Lock()

    def mode(self, namespace: str) -> Mode:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(namespace)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            found: dict[str, Any] | None = call_json("read_namespace", self._core.read_namespace, namespace)
        except StoreError as error:
            log.warning("could not read namespace %s for its mode (%s); using %s", namespace, error, self.default)
            found = None
        mode = mode_of(found, self.default)
        with self._lock:
            self._cache[namespace] = (now, mode)
        return mode
