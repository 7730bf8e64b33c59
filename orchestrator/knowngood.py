"""Which revisions of a workload were healthy, which were seen failing, and which one to go back to.

Pure: the store (`orchestrator.knowngood_store`) reads the cluster and persists the record; this
module only decides. A revision is identified by the digest of its template, not by its number:
`kubectl rollout undo` (and AMOS's rollback) gives an old template a new number, never a new digest.

- recorded known-good: the monitors saw the revision current, every replica Ready and no fault for a
  stable window (`HealthyRevision`);
- known-bad: the orchestrator handled an incident while the revision was current;
- inferred known-good, when nothing recorded applies: a revision whose pods are Ready now while the
  current one fails (an old ReplicaSet still serving), else the newest earlier revision not known-bad.

The latest mark of a digest wins: a revision seen failing and later seen healthy again is good.
The rollback target is the newest known-good revision other than the current one, never a known-bad
one; with none there is no target and the caller escalates, saying so.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from core.models import ObjectRef
from tools import objects

MAX_MARKS = 20  # marks kept per workload (newest); older revisions fall out of the history anyway
MAX_TEMPLATES = 5  # CronJob job templates kept per workload


def current_revision(workload: dict[str, Any]) -> int | str | None:
    """The revision a workload runs now: a Deployment's number, a StatefulSet's ControllerRevision name."""
    number = objects.revision(workload)
    if number is not None:
        return number
    update = (workload.get("status") or {}).get("updateRevision")
    return str(update) if update else None


class Mark(StrEnum):
    GOOD = "good"
    BAD = "bad"


class Source(StrEnum):
    RECORDED = "recorded"  # seen healthy by AMOS's monitors
    INFERRED = "inferred"  # read from the history's state when nothing was recorded


class RevisionMark(BaseModel):
    digest: str
    revision: int | None = None  # the number it had when marked (numbers move on rollback)
    mark: Mark
    at: datetime
    note: str = ""


class GoodTemplate(BaseModel):
    """A CronJob job template that produced a successful Job; its "revision" is its place in the record (1 = oldest
    kept), as `tools.policy.WorkloadHistory.known_good_job_templates` numbers them."""

    digest: str
    job_template: dict[str, Any]
    job: str
    at: datetime


class KnownGoodRecord(BaseModel):
    """Everything AMOS knows about one workload's revisions; one object per workload in the store."""

    workload: ObjectRef
    uid: str = ""  # the workload's uid: a workload deleted and created again starts afresh
    marks: list[RevisionMark] = Field(default_factory=list)
    templates: list[GoodTemplate] = Field(default_factory=list)
    updated_at: datetime | None = None

    def mark_of(self, digest: str) -> RevisionMark | None:
        return next((mark for mark in reversed(self.marks) if mark.digest == digest), None)

    def note(self, digest: str, revision: int | None, mark: Mark, at: datetime, note: str = "") -> None:
        """Mark a revision (the newest mark of a digest replaces the older one); keeps the newest MAX_MARKS."""
        kept = [existing for existing in self.marks if existing.digest != digest]
        kept.append(RevisionMark(digest=digest, revision=revision, mark=mark, at=at, note=note[:300]))
        self.marks = kept[-MAX_MARKS:]

    def add_template(self, digest: str, job_template: dict[str, Any], job: str, at: datetime) -> GoodTemplate:
        """Remember a job template that produced a successful Job (moved to the end when already known)."""
        entry = GoodTemplate(digest=digest, job_template=job_template, job=job, at=at)
        self.templates = [template for template in self.templates if template.digest != digest] + [entry]
        self.templates = self.templates[-MAX_TEMPLATES:]
        return entry

    def numbered_templates(self) -> dict[int, GoodTemplate]:
        """The job templates by "revision": 1 for the oldest kept."""
        return dict(enumerate(self.templates, start=1))


class Revision(BaseModel):
    """One entry of a workload's history, as the selection sees it."""

    number: int
    digest: str
    ready: int = 0  # Ready pods made from this revision now
    current: bool = False


class RevisionState(BaseModel):
    """What is known about one revision, as get_rollout_history shows it."""

    number: int
    current: bool = False
    known_good: Source | None = None
    known_bad: bool = False
    note: str = ""


class Choice(BaseModel):
    """The rollback target (None: there is none) and why."""

    target: int | None = None
    digest: str | None = None
    source: Source | None = None
    reason: str


def revisions_of(workload: dict[str, Any], history: list[dict[str, Any]], pods: list[dict[str, Any]]) -> list[Revision]:
    """The workload's history as the selection sees it: number, digest, Ready pods, and which one is current."""
    current = objects.current_history_entry(workload, history)
    found = []
    for entry in history:
        number = objects.revision(entry)
        if number is None:
            continue
        if entry.get("kind") == "ReplicaSet":
            ready = int((entry.get("status") or {}).get("readyReplicas") or 0)
        else:
            ready = sum(
                1
                for pod in pods
                if objects.made_from(pod, entry)
                and objects.is_ready(pod)
                and not objects.meta(pod).get("deletionTimestamp")
            )
        digest = objects.template_digest(objects.revision_template(entry))
        found.append(Revision(number=number, digest=digest, ready=ready, current=entry is current))
    found.sort(key=lambda revision: revision.number)
    return found  # no entry is current while the controller has not written one for the current template


def classify(revisions: list[Revision], record: KnownGoodRecord) -> dict[int, RevisionState]:
    """The state of every revision: recorded good/bad from the record, and the inferred one (the target)."""
    states: dict[int, RevisionState] = {}
    for revision in revisions:
        mark = record.mark_of(revision.digest)
        state = RevisionState(number=revision.number, current=revision.current)
        if mark is not None:
            state.known_bad = mark.mark is Mark.BAD
            state.known_good = Source.RECORDED if mark.mark is Mark.GOOD else None
            state.note = mark.note
        states[revision.number] = state
    choice = select_target(revisions, record)
    if choice.target is not None and choice.source is Source.INFERRED:
        states[choice.target].known_good = Source.INFERRED
        states[choice.target].note = choice.reason
    return states


def select_target(revisions: list[Revision], record: KnownGoodRecord) -> Choice:
    """The newest known-good revision other than the current one, never a known-bad one."""
    current = next((revision for revision in revisions if revision.current), None)
    candidates = []
    for revision in revisions:
        if revision.current or (current is not None and revision.digest == current.digest):
            continue
        mark = record.mark_of(revision.digest)
        if mark is not None and mark.mark is Mark.BAD:
            continue
        candidates.append((revision, mark))
    candidates.sort(key=lambda pair: pair[0].number)
    recorded = [revision for revision, mark in candidates if mark is not None and mark.mark is Mark.GOOD]
    if recorded:
        chosen = recorded[-1]
        at = record.mark_of(chosen.digest)
        when = f" at {at.at:%Y-%m-%d %H:%M} UTC" if at is not None else ""
        return Choice(
            target=chosen.number,
            digest=chosen.digest,
            source=Source.RECORDED,
            reason=f"revision {chosen.number} was seen healthy{when} (recorded by AMOS)",
        )
    serving = [revision for revision, _ in candidates if revision.ready > 0]
    if serving:
        chosen = serving[-1]
        return Choice(
            target=chosen.number,
            digest=chosen.digest,
            source=Source.INFERRED,
            reason=f"inferred: revision {chosen.number} has {chosen.ready} Ready pod(s) while the current one fails",
        )
    earlier = [revision for revision, _ in candidates if current is None or revision.number < current.number]
    if earlier:
        chosen = earlier[-1]
        return Choice(
            target=chosen.number,
            digest=chosen.digest,
            source=Source.INFERRED,
            reason=f"inferred: revision {chosen.number} is the newest earlier revision not known to be bad",
        )
    bad = sum(1 for revision in revisions if not revision.current and _is_bad(record, revision.digest))
    why = f"every earlier revision ({bad}) was seen failing" if bad else "there is no earlier revision"
    return Choice(reason=f"no known-good revision to roll back to: {why}")


def select_job_template(current_digest: str, record: KnownGoodRecord) -> Choice:
    """A CronJob's target: the last job template that produced a successful Job, unless it is the current one."""
    usable = [
        (number, template)
        for number, template in record.numbered_templates().items()
        if not _is_bad(record, template.digest)
    ]
    if not usable:
        return Choice(reason="no job template of this CronJob was seen producing a successful Job")
    number, last = usable[-1]
    if last.digest == current_digest:
        return Choice(
            reason=f"the current job template is the last one seen succeeding (Job {last.job}); "
            "there is nothing to roll back to"
        )
    return Choice(
        target=number,
        digest=last.digest,
        source=Source.RECORDED,
        reason=f"job template {number} produced the successful Job {last.job} at {last.at:%Y-%m-%d %H:%M} UTC",
    )


def _is_bad(record: KnownGoodRecord, digest: str) -> bool:
    mark = record.mark_of(digest)
    return mark is not None and mark.mark is Mark.BAD
