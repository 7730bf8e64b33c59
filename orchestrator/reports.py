"""Reports: one place that builds an incident's report, records its Event and hands it to the outbox.

The outbox (`ReportSink`) persists the report before `deliver` returns and sends it on its own
threads, so an incident never waits on SMTP or a webhook. The delivery key is what makes "at
least once, not twice" hold across restarts and failovers, and what folds repeated escalations of
one root cause into one report (Alertmanager's notification log plays the same role).
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from agents.session import SessionResult
from core.actions import Diagnosis
from core.config import Settings
from core.models import Incident, ObjectRef
from core.report import ActionRecord, AttemptRecord, IncidentReport, NamespaceOutage, Outcome
from orchestrator.attempt import Attempt
from orchestrator.events import EventRecorder
from orchestrator.outcome import Conclusion
from tools import objects

log = logging.getLogger(__name__)

REPORTS_KEPT = 200
EVENT_REASONS: dict[Outcome, str] = {
    Outcome.FIXED: "Fixed",
    Outcome.ROLLED_BACK: "RolledBack",
    Outcome.ESCALATED: "Escalated",
    Outcome.RECOMMENDED: "Recommended",
    Outcome.INCONCLUSIVE: "Escalated",
    Outcome.SUPERSEDED: "Superseded",
    Outcome.APPROVAL_NEEDED: "ApprovalNeeded",
}
WARNING_OUTCOMES = frozenset({Outcome.ESCALATED, Outcome.INCONCLUSIVE, Outcome.ROLLED_BACK, Outcome.APPROVAL_NEEDED})


def _verdict_text(attempt: Attempt) -> str:
    assert attempt.verdict is not None
    return ("after AMOS restarted: " if attempt.resumed else "") + attempt.verdict.text()


class ReportSink(Protocol):
    """Durable hand-off: the report is stored before `deliver` returns; the same key is delivered once."""

    def deliver(self, report: IncidentReport, key: str) -> None: ...


def delivery_key(report: IncidentReport, attempt_started: datetime | None) -> str:
    """Stable across restarts: a fix is keyed by its attempt, an escalation by workload, spec and root cause.

    So recovery re-delivering a journaled report sends nothing new, and the same escalation found again
    after a restart (or through another symptom of the same fault) folds into the one already sent.
    """
    incident = report.incident
    if attempt_started is not None and report.outcome in (Outcome.FIXED, Outcome.ROLLED_BACK, Outcome.SUPERSEDED):
        raw = f"{incident.fingerprint}|{attempt_started.isoformat()}|{report.attempt}|{report.outcome.value}"
    else:
        cause = report.root_cause or report.escalation_reason or ""
        raw = f"{incident.workload}|{report.spec_generation}|{report.outcome.value}|{report.category}|{cause}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


class Reporter:
    """Builds reports with one wording, records the outcome Event, hands the report to the sink."""

    def __init__(
        self,
        settings: Settings,
        events: EventRecorder,
        sink: ReportSink | None,
        clock: Callable[[], datetime],
        on_report: Callable[[IncidentReport], None] | None = None,
    ) -> None:
        self.settings = settings
        self.events = events
        self.sink = sink
        self._clock = clock
        self.on_report = on_report
        self.reports: deque[IncidentReport] = deque(maxlen=REPORTS_KEPT)

    def build(
        self,
        incident: Incident,
        outcome: Outcome,
        *,
        started: datetime,
        attempt: int = 0,
        diagnosis: Diagnosis | None = None,
        results: Sequence[SessionResult] = (),
        records: Sequence[ActionRecord] = (),
        verification: str = "",
        rolled_back: bool = False,
        reason: str | None = None,
        human_steps: Sequence[str] = (),
        spec_generation: int | None = None,
        outage: NamespaceOutage | None = None,
    ) -> IncidentReport:
        last = results[-1] if results else None
        diagnosis = diagnosis or (last.diagnosis if last is not None else None)
        steps = list(diagnosis.human_steps if diagnosis else []) + list(human_steps)
        return IncidentReport(
            incident=incident,
            outcome=outcome,
            attempt=attempt,
            max_attempts=self.settings.max_attempts,
            root_cause=diagnosis.root_cause if diagnosis else "",
            category=diagnosis.category.value if diagnosis else "",
            confidence=diagnosis.confidence if diagnosis else None,
            evidence=list(diagnosis.evidence) if diagnosis else [],
            actions=list(records),
            verification=verification,
            rolled_back=rolled_back,
            escalation_reason=reason,
            human_steps=list(dict.fromkeys(steps)),
            model=last.model if last is not None else "",
            model_calls=sum(r.model_calls for r in results),
            tokens=sum(r.tokens for r in results),
            started_at=started,
            finished_at=self._clock(),
            spec_generation=spec_generation,
            outage=outage,
        )

    def from_attempts(
        self,
        incident: Incident,
        attempts: Sequence[Attempt],
        conclusion: Conclusion,
        *,
        started: datetime,
        diagnosis: Diagnosis | None = None,
        spec_generation: int | None = None,
    ) -> IncidentReport:
        """The report of a remediation: every attempt's records and verdicts, the conclusion's outcome."""
        results = [a.result for a in attempts if a.result is not None]
        report = self.build(
            incident,
            conclusion.outcome,
            started=started,
            attempt=attempts[-1].number,
            diagnosis=diagnosis,
            results=results,
            records=[record for attempt in attempts for record in attempt.records],
            verification="\n".join(f"attempt {a.number}: {_verdict_text(a)}" for a in attempts if a.verdict),
            rolled_back=any(a.restore is not None and a.restore.changed for a in attempts),
            reason=conclusion.reason,
            spec_generation=spec_generation,
        )
        report.attempts = [
            AttemptRecord(
                number=a.number,
                actions=list(a.records),
                verification=_verdict_text(a) if a.verdict else "",
                rolled_back=a.restore is not None and a.restore.changed and a.restored,
            )
            for a in attempts
        ]
        report.revision_before = objects.revision(attempts[0].snapshot.workload)
        return report

    def finish(
        self, report: IncidentReport, target: ObjectRef | dict[str, Any], *, attempt_started: datetime | None = None
    ) -> IncidentReport:
        """Record the outcome Event and hand the report to the outbox (which never blocks on delivery)."""
        message = f"incident {report.incident.id} ({report.incident.kind.value}): {report.outcome.value}"
        if report.escalation_reason:
            message += f": {report.escalation_reason}"
        key = delivery_key(report, attempt_started)
        self.events.record(
            target,
            EVENT_REASONS[report.outcome],
            message,
            warning=report.outcome in WARNING_OUTCOMES,
            action="Report",
            key=key,  # the report's own key: a report handed over again (after a restart) is not recorded twice
        )
        self.reports.append(report)
        log.info("incident %s: %s", report.incident.id, report.subject)
        if self.sink is not None:
            # Raises when the outbox cannot store it: the caller keeps its journal entry, so it is retried.
            self.sink.deliver(report, key)
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception:
                log.exception("on_report callback failed")
        return report
