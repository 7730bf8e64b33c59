"""Known-good revisions read from the cluster: marking what was seen healthy or failing, and the rollback target.

The deciding is pure (`orchestrator.knowngood`); the record is kept by `orchestrator.knowngood_records`.
This module reads the workload, its rollout history, its pods and (for a CronJob) its Jobs, names the
revision a signal or an incident means, and asks the pure rules which one a rollback returns to.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from core.models import ObjectRef
from orchestrator.knowngood import (
    Choice,
    KnownGoodRecord,
    Mark,
    RevisionState,
    Source,
    classify,
    revisions_of,
    select_job_template,
    select_target,
)
from orchestrator.knowngood_records import KnownGoodRecords, Signer
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess

# labels and annotations the Job controller and the CronJob controller put on a Job, not part of a template
_GENERATED_PREFIXES = ("batch.kubernetes.io/", "controller-uid", "job-name")


class HealthyRevisionLike(Protocol):
    """What `mark_good` reads from `monitors.health.HealthyRevision` (other fields are ignored).

    `template_hash` (pod-template-hash or ControllerRevision name) names the revision, else `revision`
    (its number), else the workload's current revision is meant. For a CronJob, `job` names the Job
    that succeeded (else the newest successful one); `observed_at` is when it was seen healthy.
    """

    @property
    def workload(self) -> ObjectRef: ...


def _generated(key: str) -> bool:
    return key.startswith(_GENERATED_PREFIXES)


def job_template_of(job: dict[str, Any]) -> dict[str, Any]:
    """The job template a Job was made from, without what the Job and CronJob controllers added."""
    spec = copy.deepcopy(job.get("spec") or {})
    spec.pop("selector", None)
    spec.pop("manualSelector", None)
    template_meta = (spec.get("template") or {}).get("metadata") or {}
    if "labels" in template_meta:
        template_meta["labels"] = {k: v for k, v in (template_meta["labels"] or {}).items() if not _generated(k)}
    metadata = {
        key: {k: v for k, v in (objects.meta(job).get(key) or {}).items() if not _generated(k)}
        for key in ("labels", "annotations")
    }
    return {"metadata": {key: value for key, value in metadata.items() if value}, "spec": spec}


def _complete(job: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Complete" and c.get("status") == "True"
        for c in (job.get("status") or {}).get("conditions") or []
    )


class KnownGoodStore:
    """Marks revisions good or bad, and says which one a rollback should return to."""

    def __init__(
        self,
        access: ClusterAccess,
        *,
        signer: Signer | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`signer`: sign every record and ignore (and log) one whose signature does not match: a recorded CronJob
        job template is written back to the CronJob, so a record forged in the state namespace must not be used."""
        self.access = access
        self.records = KnownGoodRecords(access.api_client, access.settings.store_namespace, signer=signer, clock=clock)
        self._clock = clock

    # --- the API the orchestrator and the tools use -----------------------------------------------

    def record(self, ref: ObjectRef) -> KnownGoodRecord:
        """What is recorded for `ref` (an empty record when nothing is)."""
        return self.records.record(ref)

    def mark_good(self, signal: HealthyRevisionLike) -> KnownGoodRecord | None:
        """Record a revision the monitors saw healthy (a CronJob: the job template of a successful Job).

        Returns the record, or None when the workload (or the revision, or a successful Job) is gone.
        """
        ref = signal.workload
        revision = getattr(signal, "template_hash", None) or getattr(signal, "revision", None)
        at = getattr(signal, "observed_at", None) or self._clock()
        workload = self._workload(ref)
        if workload is None:
            return None
        if ref.kind == "CronJob":
            return self._record_job_success(ref, workload, getattr(signal, "job", None), at)
        resolved = self._resolve(workload, revision)
        if resolved is None and isinstance(getattr(signal, "revision", None), int):
            resolved = self._resolve(workload, signal.revision)  # type: ignore[attr-defined]
        if resolved is None:
            return None
        number, digest = resolved
        return self.records.update(
            ref, workload, lambda record: record.note(digest, number, Mark.GOOD, at, "seen healthy")
        )

    def mark_bad(self, ref: ObjectRef, revision: int | str | None = None, *, note: str = "") -> KnownGoodRecord | None:
        """Record that `revision` was seen failing, e.g. when an incident is handled while it is current.

        `revision`: a number, a ControllerRevision name or a pod-template-hash; None means the current one
        (only while the controller has seen the current spec: None is returned otherwise, so pass the
        revision when the caller knows it). Returns None when the workload or the revision is not found.
        """
        workload = self._workload(ref)
        if workload is None:
            return None
        at = self._clock()
        if ref.kind == "CronJob":
            digest = objects.template_digest(objects.workload_template(workload))
            return self.records.update(ref, workload, lambda record: record.note(digest, None, Mark.BAD, at, note))
        resolved = self._resolve(workload, revision)
        if resolved is None:
            return None
        number, digest = resolved
        return self.records.update(ref, workload, lambda record: record.note(digest, number, Mark.BAD, at, note))

    def target(self, ref: ObjectRef) -> Choice:
        """The revision a rollback of `ref` should return to, read from the cluster now."""
        workload = self._workload(ref)
        if workload is None:
            return Choice(reason=f"{ref} was not found")
        if ref.kind == "CronJob":
            current = objects.template_digest(objects.workload_template(workload))
            return select_job_template(current, self.record(ref))
        history = self.access.history_of(workload)
        if not history:
            return Choice(reason=f"a {ref.kind} keeps no rollout history")
        return select_target(revisions_of(workload, history, self._pods(workload)), self.record(ref))

    def judge(
        self, workload: dict[str, Any], history: list[dict[str, Any]], pods: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """For the read and write tools: the state of each revision and the rollback target, as plain data."""
        ref = self._ref(workload)
        record = self.records.current(ref, workload)
        states: dict[int, RevisionState]
        if ref.kind == "CronJob":
            current = objects.template_digest(objects.workload_template(workload))
            choice = select_job_template(current, record)
            states = {
                number: RevisionState(
                    number=number,
                    current=template.digest == current,
                    known_good=None if self._bad(record, template.digest) else Source.RECORDED,
                    known_bad=self._bad(record, template.digest),
                    note=f"produced the successful Job {template.job}",
                )
                for number, template in record.numbered_templates().items()
            }
        else:
            revisions = revisions_of(workload, history, pods)
            choice = select_target(revisions, record)
            states = classify(revisions, record)
        bad = [mark.digest for mark in record.marks if mark.mark is Mark.BAD]
        return {
            "revisions": {number: state.model_dump(mode="json") for number, state in states.items()},
            "target": choice.target,
            "target_source": choice.source.value if choice.source else None,
            "reason": choice.reason,
            "known_bad_digests": bad,
        }

    def job_templates(self, workload: dict[str, Any]) -> dict[int, dict[str, Any]]:
        """A CronJob's recorded job templates by number (the "revisions" a CronJob rollback chooses from)."""
        record = self.records.current(self._ref(workload), workload)
        return {number: copy.deepcopy(t.job_template) for number, t in record.numbered_templates().items()}

    # --- reading the cluster ---------------------------------------------------------------------

    @staticmethod
    def _ref(workload: dict[str, Any]) -> ObjectRef:
        metadata = objects.meta(workload)
        return ObjectRef(
            kind=str(workload.get("kind")), namespace=str(metadata.get("namespace")), name=str(metadata.get("name"))
        )

    @staticmethod
    def _bad(record: KnownGoodRecord, digest: str) -> bool:
        mark = record.mark_of(digest)
        return mark is not None and mark.mark is Mark.BAD

    def _workload(self, ref: ObjectRef) -> dict[str, Any] | None:
        try:
            return self.access.get(ref.kind, ref.namespace, ref.name)
        except ApiCallError as error:
            if error.status == 404:
                return None
            raise

    def _pods(self, workload: dict[str, Any]) -> list[dict[str, Any]]:
        return self.access.pods_of(workload) if workload.get("kind") in {"StatefulSet", "DaemonSet"} else []

    def _resolve(self, workload: dict[str, Any], revision: int | str | None) -> tuple[int, str] | None:
        """(number, digest) of the history entry `revision` names: a number, a name or hash, or the current one."""
        history = self.access.history_of(workload)
        entries = [(objects.revision(entry), entry) for entry in history]
        chosen = None
        if isinstance(revision, int) and not isinstance(revision, bool):
            chosen = next((entry for number, entry in entries if number == revision), None)
        elif isinstance(revision, str) and revision:
            chosen = next(
                (
                    entry
                    for _, entry in entries
                    if revision in {objects.meta(entry).get("name"), objects.revision_hash(entry)}
                ),
                None,
            )
        elif objects.observed(workload) or workload.get("kind") not in {"Deployment", "StatefulSet", "DaemonSet"}:
            current = next((r for r in revisions_of(workload, history, []) if r.current), None)
            chosen = next((entry for number, entry in entries if current and number == current.number), None)
        if chosen is None:
            return None
        number = objects.revision(chosen)
        return (number or 0), objects.template_digest(objects.revision_template(chosen))

    def _record_job_success(
        self, ref: ObjectRef, cronjob: dict[str, Any], job_name: str | None, at: datetime
    ) -> KnownGoodRecord | None:
        jobs = [job for job in self.access.jobs_of(cronjob) if _complete(job)]
        if job_name:
            jobs = [job for job in jobs if objects.meta(job).get("name") == job_name]
        if not jobs:
            return None
        job = jobs[-1]
        own = objects.workload_template(cronjob)
        ran = objects.job_pod_template(job)
        same = objects.template_digest((own.get("spec") or {}).get("template") or {}) == objects.template_digest(ran)
        template = own if same else job_template_of(job)  # the CronJob may have changed since the Job started
        digest = objects.template_digest(template)
        name = str(objects.meta(job).get("name"))
        return self.records.update(ref, cronjob, lambda record: record.add_template(digest, template, name, at))
