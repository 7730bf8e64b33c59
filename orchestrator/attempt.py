"""What one remediation attempt did, as data: the session's result, its records, the verdict, the restore.

Shared by the steps that fill it in (`orchestrator.steps`) and the pure outcome logic that reads it
(`orchestrator.outcome`), so neither needs the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.session import SessionResult
from core.report import ActionRecord, ActionStatus
from orchestrator.restore import RestoreResult
from orchestrator.verify import Verdict, VerdictKind
from tools.snapshot import Snapshot


@dataclass
class Attempt:
    number: int
    snapshot: Snapshot
    result: SessionResult | None = None
    records: list[ActionRecord] = field(default_factory=list)
    applied: bool = False
    verdict: Verdict | None = None
    interrupted: bool = False  # verification was cut short because AMOS is stopping
    superseded_by: str | None = None  # someone else changed the spec while AMOS verified its change
    resumed: bool = False  # finished by recovery after AMOS restarted or a step failed
    restore: RestoreResult | None = None
    restore_verdict: Verdict | None = None

    @property
    def fixed(self) -> bool:
        return self.applied and self.verdict is not None and (self.verdict.ok or self.deferred)

    @property
    def deferred(self) -> bool:
        """Kept and judged later (a CronJob's next run), not restored."""
        return self.verdict is not None and self.verdict.kind is VerdictKind.DEFERRED

    @property
    def inconclusive(self) -> bool:
        return self.verdict is not None and self.verdict.kind is VerdictKind.INCONCLUSIVE and not self.interrupted

    @property
    def restored(self) -> bool:
        return (
            self.restore is not None and self.restore.ok and (self.restore_verdict is None or self.restore_verdict.ok)
        )

    @property
    def proposals(self) -> list[ActionRecord]:
        return [r for r in self.records if r.status is ActionStatus.PROPOSED]

    def applied_summary(self) -> str:
        return "; ".join(r.summary for r in self.records if r.status is ActionStatus.APPLIED and r.verb != "restore")

    def summary(self) -> str:
        verdict = self.verdict.reason if self.verdict else "not verified"
        return f"{self.applied_summary() or 'no change'} -> {verdict}"
