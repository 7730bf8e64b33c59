"""The records AMOS keeps about its own work, as typed models; the stores persist them.

Ledger (attempts per fault fingerprint), WorkloadState (cooldown, block, watched fix), JournalEntry
(the remediation in flight and its phase), BreakerState (the cluster-wide budget) and SnapshotInfo.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.actions import Diagnosis
from core.models import Incident, ObjectRef
from core.report import ActionRecord, IncidentReport

MAX_HISTORY = 20


GIVEN_BACK = "no change"  # the outcome noted for an attempt that changed nothing: its count was given back


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
    verdict: dict[str, Any] | None = None  # the judge's Verdict, so a resumed attempt concludes as it would have
    restore: dict[str, Any] | None = None  # the RestoreResult of a rollback, likewise
    diagnosis: Diagnosis | None = None  # kept so a recovery report still names the root cause
    requested_by: str = ""  # who chose the fix when a person did (adk web, an approval); empty: AMOS's session
    owner: str = ""
    term: int = 0  # the leader term (Lease transitions) of the owner; a newer term's claim wins
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
