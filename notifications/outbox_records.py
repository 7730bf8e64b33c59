"""The outbox's entries in the cluster: one ConfigMap per report, written with its resourceVersion.

`amos-outbox-<delivery id>` in the state namespace, labelled `app.kubernetes.io/managed-by=amos`,
`amos.io/record=outbox`, `outbox.amos.io/<channel>=pending|delivered|failed` (so a channel lists only
its pending entries) and `outbox.amos.io/done=true|false`. The entry itself is JSON under `entry.json`.
Every replace carries the resourceVersion read before it: a concurrent writer gets 409 (`Conflict`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from kubernetes import client
from pydantic import BaseModel, Field, ValidationError

from core import api_errors
from core.k8s import AMOS_MANAGER, MANAGED_BY_LABEL, RECORD_LABEL
from core.report import IncidentReport
from notifications.delivery import ChannelName
from tools.results import api_status

RECORD = "outbox"
CHANNEL_LABEL_PREFIX = "outbox.amos.io/"
DONE_LABEL = "outbox.amos.io/done"
ENTRY_KEY = "entry.json"
NAME_PREFIX = "amos-outbox-"
REQUEST_TIMEOUT_SECONDS = 15.0


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # permanently: a permanent error, or transient ones past the deadline


class ChannelDelivery(BaseModel):
    """One channel's progress on one entry."""

    state: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    last_error: str = ""
    next_attempt_at: datetime | None = None
    finished_at: datetime | None = None
    claimed_by: str = ""
    claim_expires_at: datetime | None = None


class OutboxEntry(BaseModel):
    """One report, waiting for (or done with) every channel it is meant for."""

    key: str
    delivery_id: str
    created_at: datetime
    report: IncidentReport
    channels: dict[ChannelName, ChannelDelivery] = Field(default_factory=dict)
    finished_at: datetime | None = None  # when the last channel reached a final state

    @property
    def done(self) -> bool:
        return all(state.state is not DeliveryState.PENDING for state in self.channels.values())


class OutboxStoreError(Exception):
    """A read or write of an entry failed; `status` is the HTTP status when the API server answered."""

    def __init__(self, call: str, cause: BaseException) -> None:
        self.status, detail = api_status(cause)
        super().__init__(f"{call} failed: {detail}")

    @property
    def transient(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


class Conflict(Exception):
    """The entry changed (or vanished) since it was read."""


class Stored(BaseModel):
    entry: OutboxEntry
    resource_version: str


class OutboxRecords:
    """CRUD of outbox entries in one namespace; every method may raise `OutboxStoreError`."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self._core = client.CoreV1Api(api_client)

    @staticmethod
    def name(delivery_id: str) -> str:
        return NAME_PREFIX + delivery_id

    def _call(self, call: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            response = method(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
            raw = response.data
        except Exception as error:  # every failure becomes one error type naming the call
            api_errors.report(self._core.api_client, call, error)
            raise OutboxStoreError(call, error) from error
        return json.loads(raw) if raw else None

    def ensure_namespace(self) -> None:
        try:
            self._call("read_namespace", self._core.read_namespace, self.namespace)
            return
        except OutboxStoreError as error:
            if error.status != 404:
                raise
        body = {"metadata": {"name": self.namespace, "labels": {MANAGED_BY_LABEL: AMOS_MANAGER}}}
        try:
            self._call("create_namespace", self._core.create_namespace, body, field_manager=AMOS_MANAGER)
        except OutboxStoreError as error:
            if error.status != 409:
                raise

    def _body(self, entry: OutboxEntry, resource_version: str | None = None) -> dict[str, Any]:
        labels = {MANAGED_BY_LABEL: AMOS_MANAGER, RECORD_LABEL: RECORD, DONE_LABEL: str(entry.done).lower()}
        labels |= {CHANNEL_LABEL_PREFIX + name.value: state.state.value for name, state in entry.channels.items()}
        metadata: dict[str, Any] = {"name": self.name(entry.delivery_id), "namespace": self.namespace, "labels": labels}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"metadata": metadata, "data": {ENTRY_KEY: entry.model_dump_json()}}

    def create(self, entry: OutboxEntry) -> Stored | None:
        """Create `entry`; None when an entry with its delivery id already exists."""
        try:
            created = self._call(
                "create_namespaced_config_map",
                self._core.create_namespaced_config_map,
                self.namespace,
                self._body(entry),
                field_manager=AMOS_MANAGER,
            )
        except OutboxStoreError as error:
            if error.status == 409:
                return None
            raise
        return Stored(entry=entry, resource_version=created["metadata"]["resourceVersion"])

    def read(self, delivery_id: str) -> Stored | None:
        try:
            found = self._call(
                "read_namespaced_config_map",
                self._core.read_namespaced_config_map,
                self.name(delivery_id),
                self.namespace,
            )
        except OutboxStoreError as error:
            if error.status == 404:
                return None
            raise
        return self._parse(found)

    def pending(self, channel: ChannelName) -> list[Stored]:
        """The entries still waiting for `channel`."""
        return self._find(f"{CHANNEL_LABEL_PREFIX}{channel.value}={DeliveryState.PENDING.value}")

    def done(self) -> list[Stored]:
        """The entries every channel has finished with (kept for the retention period, as dedup records)."""
        return self._find(f"{DONE_LABEL}=true")

    def everything(self) -> list[Stored]:
        return self._find()

    def _find(self, extra: str = "") -> list[Stored]:
        selector = f"{MANAGED_BY_LABEL}={AMOS_MANAGER},{RECORD_LABEL}={RECORD}" + (f",{extra}" if extra else "")
        found = self._call(
            "list_namespaced_config_map", self._core.list_namespaced_config_map, self.namespace, label_selector=selector
        )
        parsed = (self._parse(item) for item in (found or {}).get("items") or [])
        return [stored for stored in parsed if stored is not None]

    def replace(self, entry: OutboxEntry, resource_version: str) -> str:
        """Write `entry` over the version read; `Conflict` when someone wrote in between (or deleted it)."""
        try:
            written = self._call(
                "replace_namespaced_config_map",
                self._core.replace_namespaced_config_map,
                self.name(entry.delivery_id),
                self.namespace,
                self._body(entry, resource_version),
                field_manager=AMOS_MANAGER,
            )
        except OutboxStoreError as error:
            if error.status in (404, 409):
                raise Conflict(entry.delivery_id) from error
            raise
        version: str = written["metadata"]["resourceVersion"]
        return version

    def delete(self, stored: Stored) -> None:
        """Delete the entry if it is still the version read."""
        body = {"preconditions": {"resourceVersion": stored.resource_version}}
        try:
            self._call(
                "delete_namespaced_config_map",
                self._core.delete_namespaced_config_map,
                self.name(stored.entry.delivery_id),
                self.namespace,
                body=body,
            )
        except OutboxStoreError as error:
            if error.status not in (404, 409):
                raise

    @staticmethod
    def _parse(found: dict[str, Any]) -> Stored | None:
        try:
            entry = OutboxEntry.model_validate_json((found.get("data") or {}).get(ENTRY_KEY) or "")
        except ValidationError:
            return None  # not ours to interpret; left for a person (it is labelled) rather than guessed at
        return Stored(entry=entry, resource_version=found["metadata"]["resourceVersion"])
