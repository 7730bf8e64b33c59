"""The runs of each CronJob, so every failing run is one incident of the CronJob, not one per Job.

The CronJob controller deletes old Jobs (by default it keeps one failed Job), so
the outcome of each finished run is remembered here, a bounded number per CronJob,
and the fault is judged on the run history: the CronJob fails while its latest
finished run failed, and recovers when a run succeeds. After a restart the history
starts from the Jobs that still exist.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from core.models import Evidence, Fault, FaultKind, ObjectRef
from monitors.health import job_healthy
from monitors.trim import JobView

RUNS_KEPT = 10  # per CronJob


class RunOutcome(StrEnum):
    ACTIVE = "active"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Run(BaseModel):
    model_config = ConfigDict(frozen=True)

    job: str
    created: datetime | None
    outcome: RunOutcome
    reason: str = ""
    message: str = ""
    failed_pods: int = 0
    since: datetime | None = None
    template_hash: str = ""

    @classmethod
    def of(cls, job: JobView) -> Run:
        failed = job.condition("Failed")
        if job.has_failed and failed is not None:
            return cls(
                job=job.name,
                created=job.created,
                outcome=RunOutcome.FAILED,
                reason=failed.reason or "Failed",
                message=failed.message,
                failed_pods=job.failed,
                since=failed.last_transition,
                template_hash=job.template_hash,
            )
        outcome = RunOutcome.SUCCEEDED if job_healthy(job) else RunOutcome.ACTIVE
        return cls(job=job.name, created=job.created, outcome=outcome, template_hash=job.template_hash)


class CronJobRuns:
    """CronJob -> its recent runs, oldest first; safe to share between watch threads."""

    def __init__(self, runs_kept: int = RUNS_KEPT) -> None:
        self._runs_kept = runs_kept
        self._runs: dict[ObjectRef, dict[str, Run]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._runs)

    def record(self, cron_job: ObjectRef, job: JobView) -> list[Run]:
        """Note the Job's current outcome; return the CronJob's runs."""
        with self._lock:
            runs = self._runs.setdefault(cron_job, {})
            runs[job.name] = Run.of(job)
            ordered = _ordered(runs.values())
            self._runs[cron_job] = {r.job: r for r in ordered[-self._runs_kept :]}
            return list(self._runs[cron_job].values())

    def job_deleted(self, cron_job: ObjectRef, job: str) -> list[Run]:
        """A finished run stays in the history (the controller's clean-up is not a recovery); an active one goes."""
        with self._lock:
            runs = self._runs.get(cron_job, {})
            if job in runs and runs[job].outcome is RunOutcome.ACTIVE:
                del runs[job]
            return list(runs.values())

    def replace_active(self, namespace: str | None, present: set[tuple[str, str]]) -> None:
        """After a re-list: active runs whose Job (namespace, name) is gone are dropped."""
        with self._lock:
            for cron_job, runs in self._runs.items():
                if namespace is None or cron_job.namespace == namespace:
                    for name in [n for n, r in runs.items() if r.outcome is RunOutcome.ACTIVE]:
                        if (cron_job.namespace, name) not in present:
                            del runs[name]

    def runs(self, cron_job: ObjectRef) -> list[Run]:
        with self._lock:
            return list(self._runs.get(cron_job, {}).values())

    def forget(self, cron_job: ObjectRef) -> None:
        with self._lock:
            self._runs.pop(cron_job, None)

    def forget_where(self, keep: set[ObjectRef], namespace: str | None) -> None:
        """After a re-list of CronJobs: drop the histories of CronJobs (of `namespace`) not in `keep`."""
        with self._lock:
            self._runs = {
                ref: runs
                for ref, runs in self._runs.items()
                if ref in keep or (namespace is not None and ref.namespace != namespace)
            }


def latest_finished(runs: list[Run]) -> Run | None:
    return next((r for r in reversed(_ordered(runs)) if r.outcome is not RunOutcome.ACTIVE), None)


def cron_job_faults(cron_job: ObjectRef, runs: list[Run], now: datetime) -> list[Fault]:
    """JOB_FAILED on the CronJob while its latest finished run failed; the evidence counts the failed runs."""
    finished = [r for r in _ordered(runs) if r.outcome is not RunOutcome.ACTIVE]
    if not finished or finished[-1].outcome is not RunOutcome.FAILED:
        return []
    latest = finished[-1]
    failures = sum(r.outcome is RunOutcome.FAILED for r in finished)
    detail = (
        f"{latest.message} ({latest.failed_pods} failed pod(s))"
        if latest.message
        else f"{latest.failed_pods} failed pod(s)"
    )
    message = f"{failures} of the last {len(finished)} runs failed; latest failed run: Job {latest.job}: {detail}"
    evidence = Evidence(reason=latest.reason, message=message, since=latest.since)
    return [Fault(kind=FaultKind.JOB_FAILED, workload=cron_job, subject=cron_job, evidence=evidence, observed_at=now)]


def _ordered(runs: Iterable[Run]) -> list[Run]:
    return sorted(runs, key=lambda r: (r.created is None, r.created or datetime.min, r.job))
