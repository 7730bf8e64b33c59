"""Kubernetes Events (core/v1, reportingComponent "amos") on every object AMOS touches: what it did and why.

`kubectl describe deployment web` then shows AMOS's snapshot, fix, verification, rollback
or escalation next to the controller's own events. Recording never raises: an Event that
cannot be written is logged, and the remediation goes on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from http import HTTPStatus
from typing import Any, cast

from kubernetes import client

from core.clock import Clock, utc_now
from core.models import ObjectRef
from core.redaction import Redactor
from tools import objects

log = logging.getLogger(__name__)

COMPONENT = "amos"
MAX_MESSAGE_CHARS = 1024  # the API server's limit for an Event message
API_VERSIONS = {
    "Deployment": "apps/v1",
    "ReplicaSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "Pod": "v1",
    "ConfigMap": "v1",
}


def replica_identity() -> str:
    """hostname-pid: unique per process, readable in Events, leases and journal entries."""
    return f"{socket.gethostname()}-{os.getpid()}"[:128]


def _suffix(key: str | None) -> str:
    """Ten hex digits: of the key (the same Event each time), else random (a new Event)."""
    return hashlib.sha256(key.encode()).hexdigest()[:10] if key is not None else uuid.uuid4().hex[:10]


class EventRecorder:
    """Writes one Event per call; `reason` is CamelCase (Remediating, FixApplied, RolledBack, Escalated...)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        redactor: Redactor | None = None,
        clock: Clock = utc_now,
        instance: str | None = None,
    ) -> None:
        self._core = client.CoreV1Api(api_client)
        self._redactor = redactor or Redactor()
        self._clock = clock
        self.instance = instance or replica_identity()

    def record(
        self,
        target: ObjectRef | dict[str, Any],
        reason: str,
        message: str,
        *,
        warning: bool = False,
        action: str = "",
        key: str | None = None,
    ) -> bool:
        """Record an Event on `target` (an object as read, or a reference); False when it could not be written.

        `key` names the Event: recording the same key again (a step resumed after a restart) finds it
        already there and writes nothing, so one outcome is one Event as it is one report.
        """
        if isinstance(target, ObjectRef):
            kind, namespace, name, uid = target.kind, target.namespace, target.name, None
            api_version = API_VERSIONS.get(kind, "v1")
        else:
            metadata = objects.meta(target)
            kind, namespace, name = str(target.get("kind")), str(metadata.get("namespace")), str(metadata.get("name"))
            uid = metadata.get("uid")
            api_version = str(target.get("apiVersion") or API_VERSIONS.get(kind, "v1"))
        now = self._clock()
        text = self._redactor.redact_text(message)
        if len(text) > MAX_MESSAGE_CHARS:
            text = text[: MAX_MESSAGE_CHARS - 1] + "…"
        involved: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "namespace": namespace, "name": name}
        if uid:
            involved["uid"] = uid
        body = {
            "metadata": {"name": f"{name[:200]}.amos-{_suffix(key)}", "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": text,
            "type": "Warning" if warning else "Normal",
            "action": action or reason,
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.instance,
        }
        try:
            self._core.create_namespaced_event(namespace, cast(Any, body), _preload_content=False, _request_timeout=10)
        except client.ApiException as error:
            if key is not None and error.status == HTTPStatus.CONFLICT:  # AlreadyExists: recorded before
                return True
            log.warning("could not record Event %s on %s/%s -n %s: %s", reason, kind, name, namespace, error.reason)
            return False
        except Exception as error:  # noqa: BLE001 - an Event is a courtesy: never let it stop a remediation
            log.warning("could not record Event %s on %s/%s -n %s: %s", reason, kind, name, namespace, error)
            return False
        return True
