"""Durable orchestrator state, kept as ConfigMaps in `settings.store_namespace` so it survives restarts.

Every record is one ConfigMap labelled `app.kubernetes.io/managed-by=amos` and
`amos.io/record=<type>`; the record itself is JSON under one data key, written with
its resourceVersion (a concurrent writer gets 409 and re-reads). Journal entries are signed
(`orchestrator.integrity`): recovery writes to the cluster from them, so a forged or altered entry
is never used. Snapshots are kept as signed, compressed Secrets (`orchestrator.snapshots`).

- `amos-ledger-<fingerprint>`: attempts spent on one fault fingerprint (survives restarts);
- `amos-workload-<hash>`: per workload: last action (cooldown), block, and the watch on a verified fix
  (to notice when it is reverted);
- `amos-journal-<fingerprint>`: the remediation in flight for a fingerprint and its phase, written
  before each step (snapshotted -> applying -> verifying [-> rolling_back] -> done | rolled_back);
The circuit breaker is kept by `orchestrator.breaker`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from kubernetes import client
from pydantic import BaseModel, ValidationError

from core.clock import Clock, utc_now
from core.config import Settings
from core.models import ObjectRef
from orchestrator.integrity import SIGNATURE_ANNOTATION, ForgedState, StateSigner
from orchestrator.records import JournalEntry, Ledger, WorkloadState
from orchestrator.state_api import (
    FINGERPRINT_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    PHASE_LABEL,
    RECORD_LABEL,
    WORKLOAD_ANNOTATION,
    WORKLOAD_KIND_LABEL,
    WORKLOAD_NAMESPACE_LABEL,
    StoreError,
    call_json,
)

log = logging.getLogger(__name__)


RECORD_KEY = "record.json"

MAX_WRITE_RETRIES = 5

M = TypeVar("M", bound=BaseModel)


class JournalClaimed(Exception):
    """A newer leader term owns this journal entry: the writer must stop acting on it."""


# --- the store ------------------------------------------------------------------------------------


def _hash(text: str, length: int = 20) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _workload_key(ref: ObjectRef) -> str:
    return f"{ref.kind}/{ref.namespace}/{ref.name}"


class StateStore:
    """Reads and writes the orchestrator's records; thread-safe (every write is conditional)."""

    def __init__(
        self, api_client: client.ApiClient, settings: Settings, *, clock: Clock = utc_now, owner: str = ""
    ) -> None:
        self.namespace = settings.store_namespace
        self.settings = settings
        self.owner = owner
        self._core = client.CoreV1Api(api_client)
        self._clock = clock
        self.signer = StateSigner(api_client, self.namespace, {MANAGED_BY_LABEL: MANAGED_BY})

    # --- raw ConfigMap calls ----------------------------------------------------------------------

    @staticmethod
    def _call(call: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return call_json(call, method, *args, **kwargs)

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call(
                "read_namespaced_config_map", self._core.read_namespaced_config_map, name, self.namespace
            )
            return result
        except StoreError as error:
            if error.status == 404:
                return None
            raise

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["namespace"] = self.namespace
        result: dict[str, Any] = self._call(
            "create_namespaced_config_map",
            self._core.create_namespaced_config_map,
            self.namespace,
            body,
            field_manager=MANAGED_BY,
        )
        return result

    def _replace(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "replace_namespaced_config_map",
            self._core.replace_namespaced_config_map,
            body["metadata"]["name"],
            self.namespace,
            body,
            field_manager=MANAGED_BY,
        )
        return result

    def _delete(self, name: str) -> bool:
        try:
            self._call("delete_namespaced_config_map", self._core.delete_namespaced_config_map, name, self.namespace)
        except StoreError as error:
            if error.status == 404:
                return False
            raise
        return True

    def _list(self, record: str) -> list[dict[str, Any]]:
        selector = f"{MANAGED_BY_LABEL}={MANAGED_BY},{RECORD_LABEL}={record}"
        result = self._call(
            "list_namespaced_config_map",
            self._core.list_namespaced_config_map,
            self.namespace,
            label_selector=selector,
        )
        items: list[dict[str, Any]] = (result or {}).get("items") or []
        return items

    @staticmethod
    def _labels(record: str, **extra: str) -> dict[str, str]:
        return {MANAGED_BY_LABEL: MANAGED_BY, RECORD_LABEL: record, **extra}

    def ensure_namespace(self) -> None:
        """Create the state namespace when it is missing."""
        try:
            self._call("read_namespace", self._core.read_namespace, self.namespace)
            return
        except StoreError as error:
            if error.status != 404:
                raise
        body = {"metadata": {"name": self.namespace, "labels": {MANAGED_BY_LABEL: MANAGED_BY}}}
        try:
            self._call("create_namespace", self._core.create_namespace, body, field_manager=MANAGED_BY)
            log.info("created the state namespace %s", self.namespace)
        except StoreError as error:
            if error.status != 409:
                raise

    def _update(
        self,
        name: str,
        model: type[M],
        labels: dict[str, str],
        annotations: dict[str, str],
        default: Callable[[], M],
        mutate: Callable[[M], None],
        *,
        signed: bool = False,
    ) -> M:
        """Read-modify-write one JSON record with its resourceVersion; re-read on conflict."""
        for _ in range(MAX_WRITE_RETRIES):
            found = self._read(name)
            if found is None:
                record = default()
                mutate(record)
                text = record.model_dump_json()
                extra = {SIGNATURE_ANNOTATION: self.signer.sign(text)} if signed else {}
                body = {
                    "metadata": {"name": name, "labels": labels, "annotations": annotations | extra},
                    "data": {RECORD_KEY: text},
                }
                try:
                    self._create(body)
                    return record
                except StoreError as error:
                    if error.status == 409:
                        continue
                    raise
            record = self._parse(found, model, signed) or default()
            mutate(record)
            text = record.model_dump_json()
            extra = {SIGNATURE_ANNOTATION: self.signer.sign(text)} if signed else {}
            found.setdefault("metadata", {})
            found["metadata"]["labels"] = {**(found["metadata"].get("labels") or {}), **labels}
            found["metadata"]["annotations"] = {**(found["metadata"].get("annotations") or {}), **annotations, **extra}
            found["data"] = {**(found.get("data") or {}), RECORD_KEY: text}
            try:
                self._replace(found)
                return record
            except StoreError as error:
                if error.status in (404, 409):
                    continue
                raise
        raise StoreError(f"update of {name}", RuntimeError("it kept changing"))

    def _get(self, name: str, model: type[M], *, signed: bool = False) -> M | None:
        found = self._read(name)
        return None if found is None else self._parse(found, model, signed)

    def _parse(self, found: dict[str, Any], model: type[M], signed: bool) -> M | None:
        """The record in a ConfigMap; None (logged) when it is unreadable or, if signed, its signature fails."""
        metadata = found.get("metadata") or {}
        text = (found.get("data") or {}).get(RECORD_KEY) or ""
        if signed:
            try:
                self.signer.check(
                    text,
                    (metadata.get("annotations") or {}).get(SIGNATURE_ANNOTATION),
                    f"state record {self.namespace}/{metadata.get('name')}",
                )
            except ForgedState as forged:
                log.error(
                    "%s; a person should look at it (kubectl -n %s get configmap %s -o yaml)",
                    forged,
                    self.namespace,
                    metadata.get("name"),
                )
                return None
        try:
            return model.model_validate_json(text)
        except ValidationError:
            log.warning("state record %s/%s is unreadable; ignored", self.namespace, metadata.get("name"))
            return None

    # --- attempt ledger -----------------------------------------------------------------------------

    @staticmethod
    def ledger_name(fingerprint: str) -> str:
        return f"amos-ledger-{fingerprint}"

    def ledger(self, fingerprint: str) -> Ledger:
        return self._get(self.ledger_name(fingerprint), Ledger) or Ledger(fingerprint=fingerprint)

    def update_ledger(self, fingerprint: str, workload: ObjectRef, mutate: Callable[[Ledger], None]) -> Ledger:
        def change(ledger: Ledger) -> None:
            ledger.workload = workload
            mutate(ledger)
            ledger.updated_at = self._clock()

        return self._update(
            self.ledger_name(fingerprint),
            Ledger,
            self._labels("ledger", **{FINGERPRINT_LABEL: fingerprint, WORKLOAD_NAMESPACE_LABEL: workload.namespace}),
            {WORKLOAD_ANNOTATION: _workload_key(workload)},
            lambda: Ledger(fingerprint=fingerprint),
            change,
        )

    # --- per-workload state ---------------------------------------------------------------------------

    @staticmethod
    def workload_name(ref: ObjectRef) -> str:
        return f"amos-workload-{_hash(_workload_key(ref))}"

    def workload_state(self, ref: ObjectRef) -> WorkloadState:
        return self._get(self.workload_name(ref), WorkloadState) or WorkloadState(workload=ref)

    def update_workload_state(self, ref: ObjectRef, mutate: Callable[[WorkloadState], None]) -> WorkloadState:
        def change(state: WorkloadState) -> None:
            mutate(state)
            state.updated_at = self._clock()

        return self._update(
            self.workload_name(ref),
            WorkloadState,
            self._labels("workload", **{WORKLOAD_NAMESPACE_LABEL: ref.namespace, WORKLOAD_KIND_LABEL: ref.kind}),
            {WORKLOAD_ANNOTATION: _workload_key(ref)},
            lambda: WorkloadState(workload=ref),
            change,
        )

    def watched_fixes(self) -> list[WorkloadState]:
        """Workloads with a verified fix under watch for reverts."""
        found = []
        for item in self._list("workload"):
            try:
                state = WorkloadState.model_validate_json((item.get("data") or {}).get(RECORD_KEY) or "")
            except ValidationError:
                continue
            if state.fix is not None:
                found.append(state)
        return found

    # --- journal ------------------------------------------------------------------------------------

    @staticmethod
    def journal_name(fingerprint: str) -> str:
        return f"amos-journal-{fingerprint}"

    def write_journal(self, entry: JournalEntry) -> JournalEntry:
        """Persist `entry` (create or replace); the phase is also a label, for `kubectl get -l`."""
        entry.updated_at = self._clock()
        entry.owner = entry.owner or self.owner
        snapshot = entry.model_copy(deep=True)

        def replace(current: JournalEntry) -> None:
            if current.term > snapshot.term:
                raise JournalClaimed(f"journal {entry.fingerprint} is owned by {current.owner} (term {current.term})")
            for field in JournalEntry.model_fields:
                setattr(current, field, getattr(snapshot, field))

        labels = self._labels(
            "journal",
            **{
                FINGERPRINT_LABEL: entry.fingerprint,
                PHASE_LABEL: entry.phase.value,
                WORKLOAD_NAMESPACE_LABEL: entry.workload.namespace,
            },
        )
        self._update(
            self.journal_name(entry.fingerprint),
            JournalEntry,
            labels,
            {WORKLOAD_ANNOTATION: _workload_key(entry.workload)},
            lambda: snapshot.model_copy(),
            replace,
            signed=True,
        )
        return entry

    def read_journal(self, fingerprint: str) -> JournalEntry | None:
        return self._get(self.journal_name(fingerprint), JournalEntry, signed=True)

    def claim_journal(self, fingerprint: str, owner: str, term: int) -> JournalEntry | None:
        """Take over an entry for recovery; None when a replica of a newer leader term holds it.

        The write carries the entry's resourceVersion, so of two replicas claiming at once only one wins.
        """
        name = self.journal_name(fingerprint)
        for _ in range(MAX_WRITE_RETRIES):
            found = self._read(name)
            entry = None if found is None else self._parse(found, JournalEntry, signed=True)
            if found is None or entry is None:
                return None
            if (entry.owner, entry.term) == (owner, term):
                return entry
            if entry.term > term:
                return None
            entry.owner, entry.term, entry.updated_at = owner, term, self._clock()
            text = entry.model_dump_json()
            found["data"] = {**(found.get("data") or {}), RECORD_KEY: text}
            found["metadata"]["annotations"] = {
                **(found["metadata"].get("annotations") or {}),
                SIGNATURE_ANNOTATION: self.signer.sign(text),
            }
            try:
                self._replace(found)
                return entry
            except StoreError as error:
                if error.status in (404, 409):
                    continue
                raise
        return None

    def journals(self) -> list[JournalEntry]:
        """Every journal entry in the store (unfinished ones, and finished ones not yet cleaned up)."""
        entries = [
            entry
            for item in self._list("journal")
            if (entry := self._parse(item, JournalEntry, signed=True)) is not None
        ]
        return sorted(entries, key=lambda entry: entry.started_at)

    def delete_journal(self, fingerprint: str) -> None:
        self._delete(self.journal_name(fingerprint))

    # --- housekeeping ---------------------------------------------------------------------------------

    def prune_idle(self, max_age: timedelta) -> int:
        """Delete ledgers and workload records nobody touched for `max_age` (a running block is kept)."""
        horizon = self._clock() - max_age
        deleted = 0
        for record, model in (("ledger", Ledger), ("workload", WorkloadState)):
            for item in self._list(record):
                try:
                    parsed = model.model_validate_json((item.get("data") or {}).get(RECORD_KEY) or "")
                except ValidationError:
                    continue
                updated = getattr(parsed, "updated_at", None)
                blocked = getattr(parsed, "blocked_until", None)
                if blocked is not None and blocked > self._clock():
                    continue
                if updated is not None and updated < horizon and self._delete(item["metadata"]["name"]):
                    deleted += 1
        return deleted
