"""The orchestrator's own records, kept as ConfigMaps in `settings.store_namespace` so they survive restarts.

Each record is one ConfigMap (`orchestrator.configmap_records`: conditional writes, signed where AMOS
acts on it); journal entries are signed, since recovery writes to the cluster from them. Snapshots are
kept as signed, compressed Secrets (`orchestrator.snapshots`), the circuit breaker by `orchestrator.breaker`.

- `amos-ledger-<fingerprint>`: attempts spent on one fault fingerprint (survives restarts);
- `amos-workload-<hash>`: per workload: last action (cooldown), block, and the watch on a verified fix
  (to notice when it is reverted);
- `amos-journal-<fingerprint>`: the remediation in flight for a fingerprint and its phase, written
  before each step (snapshotted -> applying -> verifying [-> rolling_back] -> done | rolled_back).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta

from kubernetes import client
from pydantic import ValidationError

from core.clock import Clock, utc_now
from core.config import Settings
from core.models import ObjectRef
from orchestrator.configmap_records import MAX_WRITE_RETRIES, RECORD_KEY, ConfigMapRecords
from orchestrator.records import JournalEntry, Ledger, WorkloadState
from orchestrator.state_api import (
    FINGERPRINT_LABEL,
    PHASE_LABEL,
    WORKLOAD_ANNOTATION,
    WORKLOAD_KIND_LABEL,
    WORKLOAD_NAMESPACE_LABEL,
    StoreError,
)


class JournalClaimed(Exception):
    """A newer leader term owns this journal entry: the writer must stop acting on it."""


def _hash(text: str, length: int = 20) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _workload_key(ref: ObjectRef) -> str:
    return f"{ref.kind}/{ref.namespace}/{ref.name}"


class StateStore:
    """Reads and writes the ledger, workload and journal records; thread-safe (every write is conditional)."""

    def __init__(
        self, api_client: client.ApiClient, settings: Settings, *, clock: Clock = utc_now, owner: str = ""
    ) -> None:
        self.namespace = settings.store_namespace
        self.settings = settings
        self.owner = owner
        self._clock = clock
        self.records = ConfigMapRecords(api_client, self.namespace)
        self.signer = self.records.signer

    def ensure_namespace(self) -> None:
        """Create the state namespace when it is missing."""
        self.records.ensure_namespace()

    # --- attempt ledger -----------------------------------------------------------------------------

    @staticmethod
    def ledger_name(fingerprint: str) -> str:
        return f"amos-ledger-{fingerprint}"

    def ledger(self, fingerprint: str) -> Ledger:
        return self.records.get(self.ledger_name(fingerprint), Ledger) or Ledger(fingerprint=fingerprint)

    def update_ledger(self, fingerprint: str, workload: ObjectRef, mutate: Callable[[Ledger], None]) -> Ledger:
        def change(ledger: Ledger) -> None:
            ledger.workload = workload
            mutate(ledger)
            ledger.updated_at = self._clock()

        return self.records.update(
            self.ledger_name(fingerprint),
            Ledger,
            self.records.labels(
                "ledger", **{FINGERPRINT_LABEL: fingerprint, WORKLOAD_NAMESPACE_LABEL: workload.namespace}
            ),
            {WORKLOAD_ANNOTATION: _workload_key(workload)},
            lambda: Ledger(fingerprint=fingerprint),
            change,
        )

    # --- per-workload state ---------------------------------------------------------------------------

    @staticmethod
    def workload_name(ref: ObjectRef) -> str:
        return f"amos-workload-{_hash(_workload_key(ref))}"

    def workload_state(self, ref: ObjectRef) -> WorkloadState:
        return self.records.get(self.workload_name(ref), WorkloadState) or WorkloadState(workload=ref)

    def update_workload_state(self, ref: ObjectRef, mutate: Callable[[WorkloadState], None]) -> WorkloadState:
        def change(state: WorkloadState) -> None:
            mutate(state)
            state.updated_at = self._clock()

        return self.records.update(
            self.workload_name(ref),
            WorkloadState,
            self.records.labels("workload", **{WORKLOAD_NAMESPACE_LABEL: ref.namespace, WORKLOAD_KIND_LABEL: ref.kind}),
            {WORKLOAD_ANNOTATION: _workload_key(ref)},
            lambda: WorkloadState(workload=ref),
            change,
        )

    def watched_fixes(self) -> list[WorkloadState]:
        """Workloads with a verified fix under watch for reverts."""
        found = []
        for item in self.records.list("workload"):
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

        labels = self.records.labels(
            "journal",
            **{
                FINGERPRINT_LABEL: entry.fingerprint,
                PHASE_LABEL: entry.phase.value,
                WORKLOAD_NAMESPACE_LABEL: entry.workload.namespace,
            },
        )
        self.records.update(
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
        return self.records.get(self.journal_name(fingerprint), JournalEntry, signed=True)

    def claim_journal(self, fingerprint: str, owner: str, term: int) -> JournalEntry | None:
        """Take over an entry for recovery; None when a replica of a newer leader term holds it.

        The write carries the entry's resourceVersion, so of two replicas claiming at once only one wins.
        """
        name = self.journal_name(fingerprint)
        for _ in range(MAX_WRITE_RETRIES):
            found = self.records.read(name)
            entry = None if found is None else self.records.parse(found, JournalEntry, signed=True)
            if found is None or entry is None:
                return None
            if (entry.owner, entry.term) == (owner, term):
                return entry
            if entry.term > term:
                return None
            entry.owner, entry.term, entry.updated_at = owner, term, self._clock()
            self.records.sign_into(found, entry)
            try:
                self.records.replace(found)
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
            for item in self.records.list("journal")
            if (entry := self.records.parse(item, JournalEntry, signed=True)) is not None
        ]
        return sorted(entries, key=lambda entry: entry.started_at)

    def delete_journal(self, fingerprint: str) -> None:
        self.records.delete(self.journal_name(fingerprint))

    # --- housekeeping ---------------------------------------------------------------------------------

    def prune_idle(self, max_age: timedelta) -> int:
        """Delete ledgers and workload records nobody touched for `max_age` (a running block is kept)."""
        horizon = self._clock() - max_age
        deleted = 0
        for record, model in (("ledger", Ledger), ("workload", WorkloadState)):
            for item in self.records.list(record):
                try:
                    parsed = model.model_validate_json((item.get("data") or {}).get(RECORD_KEY) or "")
                except ValidationError:
                    continue
                updated = getattr(parsed, "updated_at", None)
                blocked = getattr(parsed, "blocked_until", None)
                if blocked is not None and blocked > self._clock():
                    continue
                if updated is not None and updated < horizon and self.records.delete(item["metadata"]["name"]):
                    deleted += 1
        return deleted
