"""Durable orchestrator state, kept as ConfigMaps in `settings.store_namespace` so it survives restarts.

Every record is one ConfigMap labelled `app.kubernetes.io/managed-by=amos` and
`amos.io/record=<type>`; the record itself is JSON under one data key, written with
its resourceVersion (a concurrent writer gets 409 and re-reads):

- `amos-ledger-<fingerprint>`: attempts spent on one fault fingerprint (survives restarts);
- `amos-workload-<hash>`: per workload: last action (cooldown), block, and the watch on a verified fix
  (to notice when it is reverted);
- `amos-journal-<fingerprint>`: the remediation in flight for a fingerprint and its phase, written
  before each step (snapshotted -> applying -> verifying [-> rolling_back] -> done | rolled_back);
- `amos-snapshot-<fingerprint>-<time>-<rand>`: full JSON of the workload, its ReplicaSets and the
  ConfigMaps it references, taken before any change; only the newest `snapshot_retention` are kept;
- `amos-circuit-breaker`: the cluster-wide action budget and breaker, in plain keys a person can edit
  (see `orchestrator.guardrails`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, TypeVar

from kubernetes import client
from pydantic import BaseModel, Field, ValidationError

from core.config import Settings
from core.models import Incident, ObjectRef
from core.report import ActionRecord, IncidentReport
from tools.results import api_status
from tools.snapshot import Snapshot

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "amos"
RECORD_LABEL = "amos.io/record"
FINGERPRINT_LABEL = "amos.io/fingerprint"
PHASE_LABEL = "amos.io/phase"
WORKLOAD_NAMESPACE_LABEL = "amos.io/workload-namespace"
WORKLOAD_KIND_LABEL = "amos.io/workload-kind"
WORKLOAD_ANNOTATION = "amos.io/workload"
TAKEN_AT_ANNOTATION = "amos.io/taken-at"
TRIMMED_ANNOTATION = "amos.io/trimmed"
RECORD_KEY = "record.json"
SNAPSHOT_KEY = "snapshot.json"
BREAKER_NAME = "amos-circuit-breaker"

MAX_WRITE_RETRIES = 5
MAX_SNAPSHOT_BYTES = 900_000  # a ConfigMap holds at most 1 MiB
MAX_HISTORY = 20
REQUEST_TIMEOUT_SECONDS = 30.0

M = TypeVar("M", bound=BaseModel)


def utc_now() -> datetime:
    return datetime.now(UTC)


class StoreError(Exception):
    """A state read or write failed; `status` is the HTTP status when the API server answered."""

    def __init__(self, call: str, cause: BaseException) -> None:
        self.status, detail = api_status(cause)
        super().__init__(f"{call} failed: {detail}")


# --- records --------------------------------------------------------------------------------------


class AttemptNote(BaseModel):
    attempt: int
    incident_id: str
    at: datetime
    outcome: str
    summary: str = ""


class Ledger(BaseModel):
    """Attempts spent on one fault fingerprint. Spent attempts count until a fix is verified or the
    last attempt is older than the block period."""

    fingerprint: str
    workload: ObjectRef | None = None
    attempts: int = 0
    last_attempt_at: datetime | None = None
    escalated_incident: str | None = None  # the incident last escalated for spent attempts (mailed once)
    history: list[AttemptNote] = Field(default_factory=list)
    updated_at: datetime | None = None

    def spent(self, now: datetime, window_seconds: float) -> int:
        if self.last_attempt_at is not None and (now - self.last_attempt_at).total_seconds() > window_seconds:
            return 0
        return self.attempts

    def note(self, note: AttemptNote) -> None:
        self.history = (self.history + [note])[-MAX_HISTORY:]


class FixWatch(BaseModel):
    """A verified fix, watched for a while: if the pod template goes back to `before_hash`, it was reverted."""

    incident: Incident
    fixed_at: datetime
    before_hash: str
    after_hash: str
    summary: str = ""


class WorkloadState(BaseModel):
    workload: ObjectRef
    last_action_at: datetime | None = None
    blocked_until: datetime | None = None
    block_reason: str = ""
    fix: FixWatch | None = None
    updated_at: datetime | None = None


class Phase(StrEnum):
    SNAPSHOTTED = "snapshotted"  # the snapshot is stored; nothing was changed
    APPLYING = "applying"  # the agent session may change the workload
    VERIFYING = "verifying"  # a change was applied; the judge is watching
    ROLLING_BACK = "rolling_back"  # the change did not help; the snapshot is being put back
    DONE = "done"  # finished without rollback (fixed, or nothing changed)
    ROLLED_BACK = "rolled_back"  # the snapshot was put back (or could not be: see the report)


TERMINAL_PHASES = frozenset({Phase.DONE, Phase.ROLLED_BACK})


class JournalEntry(BaseModel):
    """The remediation in flight for one fingerprint. Written before each step: a restart reads the
    phase and does the next step (level-based, like a controller)."""

    fingerprint: str
    incident: Incident
    workload: ObjectRef
    attempt: int
    max_attempts: int
    phase: Phase
    snapshot_id: str
    snapshot_generation: int | None = None
    expected_generation: int | None = None  # the workload's generation after AMOS's own last write
    actions: list[ActionRecord] = Field(default_factory=list)
    verification: str = ""
    owner: str = ""
    started_at: datetime
    updated_at: datetime
    report: IncidentReport | None = None  # set with a terminal phase, until it is delivered


class BreakerState(BaseModel):
    """Cluster-wide action budget and circuit breaker, stored as plain ConfigMap keys."""

    state: Literal["closed", "open"] = "closed"
    reason: str = ""
    opened_at: datetime | None = None
    actions: list[datetime] = Field(default_factory=list)  # applied actions in the last hour


class SnapshotInfo(BaseModel):
    id: str
    fingerprint: str
    workload: str
    taken_at: datetime


# --- the store ------------------------------------------------------------------------------------


def _hash(text: str, length: int = 20) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _workload_key(ref: ObjectRef) -> str:
    return f"{ref.kind}/{ref.namespace}/{ref.name}"


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class StateStore:
    """Reads and writes the orchestrator's records; thread-safe (every write is conditional)."""

    def __init__(self, api_client: client.ApiClient, settings: Settings, *, clock: Clock = utc_now,
                 owner: str = "") -> None:
        self.namespace = settings.store_namespace
        self.settings = settings
        self.owner = owner
        self._core = client.CoreV1Api(api_client)
        self._clock = clock

    # --- raw ConfigMap calls ----------------------------------------------------------------------

    def _call(self, call: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            response = method(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_SECONDS, **kwargs)
            raw = response.data
        except Exception as error:  # every failure becomes one error type naming the call
            raise StoreError(call, error) from error
        return json.loads(raw) if raw else None

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
            "create_namespaced_config_map", self._core.create_namespaced_config_map, self.namespace, body,
            field_manager=MANAGED_BY,
        )
        return result

    def _replace(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "replace_namespaced_config_map", self._core.replace_namespaced_config_map,
            body["metadata"]["name"], self.namespace, body, field_manager=MANAGED_BY,
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
            "list_namespaced_config_map", self._core.list_namespaced_config_map, self.namespace,
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

    def _update(self, name: str, model: type[M], labels: dict[str, str], annotations: dict[str, str],
                default: Callable[[], M], mutate: Callable[[M], None]) -> M:
        """Read-modify-write one JSON record with its resourceVersion; re-read on conflict."""
        for _ in range(MAX_WRITE_RETRIES):
            found = self._read(name)
            if found is None:
                record = default()
                mutate(record)
                body = {"metadata": {"name": name, "labels": labels, "annotations": annotations},
                        "data": {RECORD_KEY: record.model_dump_json()}}
                try:
                    self._create(body)
                    return record
                except StoreError as error:
                    if error.status == 409:
                        continue
                    raise
            try:
                record = model.model_validate_json((found.get("data") or {}).get(RECORD_KEY) or "")
            except ValidationError:
                log.warning("state record %s/%s is unreadable; starting it afresh", self.namespace, name)
                record = default()
            mutate(record)
            found.setdefault("metadata", {})
            found["metadata"]["labels"] = {**(found["metadata"].get("labels") or {}), **labels}
            found["metadata"]["annotations"] = {**(found["metadata"].get("annotations") or {}), **annotations}
            found["data"] = {**(found.get("data") or {}), RECORD_KEY: record.model_dump_json()}
            try:
                self._replace(found)
                return record
            except StoreError as error:
                if error.status in (404, 409):
                    continue
                raise
        raise StoreError(f"update of {name}", RuntimeError("it kept changing"))

    def _get(self, name: str, model: type[M]) -> M | None:
        found = self._read(name)
        if found is None:
            return None
        try:
            return model.model_validate_json((found.get("data") or {}).get(RECORD_KEY) or "")
        except ValidationError:
            log.warning("state record %s/%s is unreadable; ignored", self.namespace, name)
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
            self.ledger_name(fingerprint), Ledger,
            self._labels("ledger", **{FINGERPRINT_LABEL: fingerprint, WORKLOAD_NAMESPACE_LABEL: workload.namespace}),
            {WORKLOAD_ANNOTATION: _workload_key(workload)},
            lambda: Ledger(fingerprint=fingerprint), change,
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
            self.workload_name(ref), WorkloadState,
            self._labels("workload", **{WORKLOAD_NAMESPACE_LABEL: ref.namespace, WORKLOAD_KIND_LABEL: ref.kind}),
            {WORKLOAD_ANNOTATION: _workload_key(ref)},
            lambda: WorkloadState(workload=ref), change,
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
            for field in JournalEntry.model_fields:
                setattr(current, field, getattr(snapshot, field))

        labels = self._labels("journal", **{FINGERPRINT_LABEL: entry.fingerprint, PHASE_LABEL: entry.phase.value,
                                            WORKLOAD_NAMESPACE_LABEL: entry.workload.namespace})
        self._update(self.journal_name(entry.fingerprint), JournalEntry, labels,
                     {WORKLOAD_ANNOTATION: _workload_key(entry.workload)}, lambda: snapshot.model_copy(), replace)
        return entry

    def read_journal(self, fingerprint: str) -> JournalEntry | None:
        return self._get(self.journal_name(fingerprint), JournalEntry)

    def journals(self) -> list[JournalEntry]:
        """Every journal entry in the store (unfinished ones, and finished ones not yet cleaned up)."""
        entries = []
        for item in self._list("journal"):
            try:
                entries.append(JournalEntry.model_validate_json((item.get("data") or {}).get(RECORD_KEY) or ""))
            except ValidationError:
                log.warning("journal entry %s is unreadable; left for a person", item["metadata"]["name"])
        return sorted(entries, key=lambda entry: entry.started_at)

    def delete_journal(self, fingerprint: str) -> None:
        self._delete(self.journal_name(fingerprint))

    # --- snapshots ------------------------------------------------------------------------------------

    def save_snapshot(self, snapshot: Snapshot, fingerprint: str) -> Snapshot:
        """Store `snapshot` as a ConfigMap; returns it with the id it is stored under. Old ones are pruned."""
        taken = snapshot.taken_at.astimezone(UTC)
        name = f"amos-snapshot-{fingerprint}-{taken:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
        stored = snapshot.model_copy(update={"id": name})
        text, trimmed = self._fit(stored)
        annotations = {WORKLOAD_ANNOTATION: _workload_key(snapshot.target), TAKEN_AT_ANNOTATION: taken.isoformat(),
                       "amos.io/objects": ", ".join(stored.objects())[:2000]}
        if trimmed:
            annotations[TRIMMED_ANNOTATION] = f"{trimmed} oldest ReplicaSet(s) left out to fit in a ConfigMap"
        labels = self._labels("snapshot", **{FINGERPRINT_LABEL: fingerprint,
                                             WORKLOAD_NAMESPACE_LABEL: snapshot.target.namespace,
                                             WORKLOAD_KIND_LABEL: snapshot.target.kind})
        self._create({"metadata": {"name": name, "labels": labels, "annotations": annotations},
                      "data": {SNAPSHOT_KEY: text}})
        return stored

    @staticmethod
    def _fit(snapshot: Snapshot) -> tuple[str, int]:
        """The snapshot JSON, leaving out the oldest ReplicaSets (never the workload) if it is too big."""
        trimmed = 0
        current = snapshot
        text = current.model_dump_json()
        while len(text.encode()) > MAX_SNAPSHOT_BYTES and current.replicasets:
            current = current.model_copy(update={"replicasets": current.replicasets[1:]})
            trimmed += 1
            text = current.model_dump_json()
        if len(text.encode()) > MAX_SNAPSHOT_BYTES:
            raise StoreError("save_snapshot", ValueError(f"the snapshot needs {len(text)} bytes, more than a ConfigMap"))
        return text, trimmed

    def load_snapshot(self, snapshot_id: str) -> Snapshot | None:
        found = self._read(snapshot_id)
        if found is None:
            return None
        try:
            return Snapshot.model_validate_json((found.get("data") or {}).get(SNAPSHOT_KEY) or "")
        except ValidationError:
            log.warning("snapshot %s is unreadable", snapshot_id)
            return None

    def snapshots(self) -> list[SnapshotInfo]:
        """Stored snapshots, newest first."""
        infos = []
        for item in self._list("snapshot"):
            metadata = item.get("metadata") or {}
            annotations = metadata.get("annotations") or {}
            taken = _parse_time(annotations.get(TAKEN_AT_ANNOTATION)) or _parse_time(
                metadata.get("creationTimestamp")) or datetime.min.replace(tzinfo=UTC)
            infos.append(SnapshotInfo(id=metadata["name"], fingerprint=(metadata.get("labels") or {}).get(
                FINGERPRINT_LABEL, ""), workload=annotations.get(WORKLOAD_ANNOTATION, ""), taken_at=taken))
        return sorted(infos, key=lambda info: (info.taken_at, info.id), reverse=True)

    def prune_snapshots(self, keep: int, protect: set[str] | None = None) -> list[str]:
        """Keep `keep` snapshots: those an unfinished journal entry needs (never deleted), then the newest."""
        protect = set(protect or ()) | {entry.snapshot_id for entry in self.journals()
                                        if entry.phase not in TERMINAL_PHASES}
        infos = self.snapshots()
        room = max(0, keep - sum(1 for info in infos if info.id in protect))  # protected ones count first
        deleted = []
        for info in infos:
            if info.id in protect:
                continue
            if room > 0:
                room -= 1
            elif self._delete(info.id):
                deleted.append(info.id)
        return deleted

    # --- circuit breaker --------------------------------------------------------------------------------

    def breaker(self) -> tuple[BreakerState, bool]:
        """The breaker state, and whether a person reset it (state set to closed while it was open)."""
        return self._parse_breaker(self._read(BREAKER_NAME))

    @staticmethod
    def _parse_breaker(found: dict[str, Any] | None) -> tuple[BreakerState, bool]:
        if found is None:
            return BreakerState(), False
        data = found.get("data") or {}
        try:
            actions = [t for t in (_parse_time(str(v)) for v in json.loads(data.get("actions") or "[]")) if t]
        except (ValueError, TypeError):
            actions = []
        state = BreakerState(
            state="open" if data.get("state", "closed").strip().lower() == "open" else "closed",
            reason=data.get("reason", ""),
            opened_at=_parse_time(data.get("opened-at")),
            actions=actions,
        )
        reset = state.state == "closed" and state.opened_at is not None
        return state, reset

    def update_breaker(self, mutate: Callable[[BreakerState, bool], None]) -> BreakerState:
        """Read-modify-write the breaker; `mutate(state, reset_by_person)`."""
        for _ in range(MAX_WRITE_RETRIES):
            found = self._read(BREAKER_NAME)
            state, reset = self._parse_breaker(found)
            mutate(state, reset)
            data = {
                "state": state.state,
                "reason": state.reason,
                "opened-at": state.opened_at.isoformat() if state.opened_at else "",
                "actions": json.dumps([t.isoformat() for t in state.actions]),
                "README": BREAKER_README.format(namespace=self.namespace, name=BREAKER_NAME),
            }
            try:
                if found is None:
                    self._create({"metadata": {"name": BREAKER_NAME, "labels": self._labels("breaker")},
                                  "data": data})
                else:
                    found["data"] = data
                    self._replace(found)
                return state
            except StoreError as error:
                if error.status in (404, 409):
                    continue
                raise
        raise StoreError("update of the circuit breaker", RuntimeError("it kept changing"))

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


BREAKER_README = """\
AMOS circuit breaker and cluster-wide action budget.
state: closed = AMOS may act; open = AMOS only diagnoses and recommends, it changes nothing.
It opens by itself when the hourly action budget (actions_per_hour) is used up, and stays
open until a person resets it. To reset it, either delete this ConfigMap:
  kubectl -n {namespace} delete configmap {name}
or set the state back to closed:
  kubectl -n {namespace} patch configmap {name} --type merge -p '{{"data":{{"state":"closed"}}}}'
Both forget the counted actions, so the full budget is available again.
"""
