"""What a report says, in words, before any transport shapes it: the mail, Slack and test-notify share it.

The first screen of every channel is built from this: the outcome, what AMOS did (never presenting a
rolled-back change as live), what the engineer must do now, and copy-paste kubectl to inspect and undo.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from core import k8s
from core.models import ObjectRef
from core.report import ActionRecord, ActionStatus, AttemptRecord, IncidentReport, Outcome, Severity

MAX_SUBJECT_CHARS = 200
RESTORE_VERB = "restore"
CHANGE_STATUSES = (ActionStatus.APPLIED, ActionStatus.FAILED)
LABELS = {
    Outcome.FIXED: "FIXED",
    Outcome.ROLLED_BACK: "ROLLED BACK",
    Outcome.ESCALATED: "ESCALATED",
    Outcome.RECOMMENDED: "RECOMMENDED",
    Outcome.INCONCLUSIVE: "INCONCLUSIVE",
    Outcome.APPROVAL_NEEDED: "APPROVAL NEEDED",
    Outcome.SUPERSEDED: "SUPERSEDED",
}
HEADLINES = {
    Outcome.FIXED: "AMOS fixed this incident: its change was applied and verified.",
    Outcome.ROLLED_BACK: "AMOS's change did not help; it restored the state from before it.",
    Outcome.ESCALATED: "AMOS stopped and needs a person to act.",
    Outcome.RECOMMENDED: "AMOS recommends a change; nothing in the cluster was changed.",
    Outcome.INCONCLUSIVE: "AMOS could not tell whether the incident is over, so a person must check.",
    Outcome.APPROVAL_NEEDED: "AMOS proposes a change and applies nothing until a person approves it.",
    Outcome.SUPERSEDED: "Someone changed the workload while AMOS was verifying its fix; AMOS claims no credit.",
}
_UID = re.compile(r"\s*[(\[]?\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b[)\]]?", re.IGNORECASE)
_ATTEMPT_LINE = re.compile(r"^attempt (\d+): ?(.*)$")


class AttemptView(BaseModel):
    """One attempt as shown: its actions, its verdict, and whether its change is still live."""

    model_config = ConfigDict(frozen=True)

    number: int
    actions: list[ActionRecord]
    verification: str
    rolled_back: bool
    changed: bool  # an action of this attempt was sent to the API server (applied or failed)
    live: bool  # its change is still in the cluster

    @property
    def state(self) -> str:
        if not self.changed:
            return "nothing applied"
        if self.rolled_back:
            return "rolled back"
        return "live"


class ReportSummary(BaseModel):
    """The transport-neutral wording of one report."""

    model_config = ConfigDict(frozen=True)

    cluster: str
    label: str
    severity: Severity
    subject: str
    headline: str
    did: list[str]
    why: str | None
    must_do: list[str]
    inspect: list[str]
    undo: list[str]
    evidence: list[str]
    attempts: list[AttemptView]
    attempted: bool
    proposed: list[ActionRecord] = Field(default_factory=list)
    seen: str
    handled: str
    workload: str


def summarize(report: IncidentReport, cluster: str) -> ReportSummary:
    """Word `report` for the first screen of any channel; `report` must already be redacted."""
    attempts = attempt_views(report)
    outage = report.outage
    label = "OUTAGE" if outage is not None else LABELS[report.outcome]
    if outage is not None:
        headline = (
            f"{len(outage.failing)} of {outage.total_workloads} workloads in {outage.scope} are failing; "
            "AMOS does not change anything during an outage."
        )
        target = outage.scope
        reason = f"{len(outage.failing)} of {outage.total_workloads} workloads failing"
    else:
        headline = HEADLINES[report.outcome]
        target = (
            f"{report.incident.workload.kind}/{report.incident.workload.name} -n {report.incident.workload.namespace}"
        )
        reason = report.incident.kind.value
    subject = " ".join(f"[AMOS][{cluster}] {label}: {reason} on {target}".split())
    if len(subject) > MAX_SUBJECT_CHARS:
        subject = subject[: MAX_SUBJECT_CHARS - 1] + "…"
    live = [attempt for attempt in attempts if attempt.live]
    return ReportSummary(
        cluster=cluster,
        label=label,
        severity=report.severity,
        subject=subject,
        headline=headline,
        did=_what_amos_did(report, attempts),
        why=report.escalation_reason,
        must_do=_what_to_do(report),
        inspect=inspect_commands(report),
        undo=undo_commands(report.incident.workload, report.revision_before) if live else [],
        evidence=evidence_lines(report),
        attempts=attempts,
        attempted=any(attempt.changed for attempt in attempts),
        proposed=[a for a in report.actions if a.status in (ActionStatus.PROPOSED, ActionStatus.DRY_RUN)],
        seen=_span(report.incident.first_seen, report.incident.last_seen),
        handled=_span(report.started_at, report.finished_at) + f" ({_duration(report.started_at, report.finished_at)})",
        workload=str(report.incident.workload),
    )


def attempt_views(report: IncidentReport) -> list[AttemptView]:
    """The attempts of `report`; without `report.attempts`, each `restore` record closes one attempt."""
    records = report.attempts or _attempts_from_actions(report)
    views: list[AttemptView] = []
    for record in records:
        changed = any(a.status in CHANGE_STATUSES and a.verb != RESTORE_VERB for a in record.actions)
        applied = any(a.status is ActionStatus.APPLIED and a.verb != RESTORE_VERB for a in record.actions)
        views.append(
            AttemptView(
                number=record.number,
                actions=record.actions,
                verification=record.verification,
                rolled_back=record.rolled_back,
                changed=changed,
                live=applied and not record.rolled_back,
            )
        )
    return views


def _attempts_from_actions(report: IncidentReport) -> list[AttemptRecord]:
    groups: list[list[ActionRecord]] = [[]]
    for action in report.actions:
        groups[-1].append(action)
        if action.verb == RESTORE_VERB:
            groups.append([])
    groups = [group for group in groups if group]
    verdicts: dict[int, str] = {}
    loose: list[str] = []
    for line in report.verification.splitlines():
        match = _ATTEMPT_LINE.match(line.strip())
        if match:
            verdicts[int(match.group(1))] = match.group(2)
        elif line.strip():
            loose.append(line.strip())
    first = report.attempt - len(groups) + 1
    records: list[AttemptRecord] = []
    for index, group in enumerate(groups):
        number = max(1, first + index)
        restored = any(a.verb == RESTORE_VERB and a.status is ActionStatus.APPLIED for a in group)
        verification = verdicts.get(number, "\n".join(loose) if index == len(groups) - 1 else "")
        records.append(AttemptRecord(number=number, actions=group, verification=verification, rolled_back=restored))
    return records


def _what_amos_did(report: IncidentReport, attempts: list[AttemptView]) -> list[str]:
    did: list[str] = []
    for attempt in attempts:
        changes = [a for a in attempt.actions if a.status in CHANGE_STATUSES and a.verb != RESTORE_VERB]
        if not changes:
            continue
        summary = "; ".join(_change_text(action) for action in changes)
        if attempt.rolled_back:
            outcome = "it did not help, so AMOS restored the snapshot taken before it: this change is no longer live"
        elif report.outcome is Outcome.FIXED:
            outcome = "verified" + (f": {attempt.verification}" if attempt.verification else "")
        elif any(a.status is ActionStatus.APPLIED for a in changes):
            outcome = "this change is still live"
        else:
            outcome = "the API server refused it, so nothing changed"
        did.append(f"Attempt {attempt.number}: {summary}; {outcome}.")
    for action in report.actions:
        if action.status is ActionStatus.REFUSED:
            did.append(f"Refused by policy: {action.summary}" + (f" ({action.reason})" if action.reason else "") + ".")
        elif action.status is ActionStatus.PROPOSED:
            did.append(f"Proposed, not applied: {action.summary}.")
        elif action.status is ActionStatus.DRY_RUN:
            did.append(f"Validated by a server-side dry run, not applied: {action.summary}.")
    if not any(attempt.changed for attempt in attempts):
        did.append("AMOS changed nothing in the cluster.")
    return did


def _change_text(action: ActionRecord) -> str:
    text = f"{action.verb} {action.target.kind}/{action.target.name}: {action.summary}"
    if action.status is ActionStatus.FAILED:
        text += " (failed" + (f": {action.reason}" if action.reason else "") + ")"
    return text


def _what_to_do(report: IncidentReport) -> list[str]:
    ref = report.incident.workload
    steps: list[str] = []
    if report.outcome is Outcome.APPROVAL_NEEDED and report.proposal_id:
        short = _kubectl_name(ref)
        steps += [
            (
                "Review the proposed change below; approve it with: "
                f"kubectl -n {ref.namespace} annotate {short} amos.io/approve={report.proposal_id}"
            ),
            f"or reject it with: python main.py reject {report.proposal_id}",
        ]
    steps += list(dict.fromkeys(report.human_steps))
    if steps:
        return steps
    if report.outage is not None:
        return [
            "Look for the common cause (a shared dependency, a bad release, quota or nodes) before fixing workloads."
        ]
    if report.outcome is Outcome.FIXED:
        return [
            (
                "Nothing is needed right now. Carry AMOS's change into the workload's source (Git, Helm values), "
                "or the next deploy will bring the fault back."
            )
        ]
    if report.outcome is Outcome.RECOMMENDED:
        return ["Review the proposed change below and apply it by hand if you agree."]
    if report.outcome is Outcome.ROLLED_BACK:
        return ["Nothing is needed right now: AMOS will try again within its attempt budget."]
    return ["Inspect the workload with the commands below and fix the cause by hand."]


def inspect_commands(report: IncidentReport) -> list[str]:
    if report.outage is not None:
        scope = "-A" if report.outage.cluster_wide else f"-n {report.outage.namespace}"
        return [
            f"kubectl {scope} get deploy,sts,ds,job,cronjob",
            f"kubectl {scope} get pods --field-selector=status.phase!=Running",
            f"kubectl {scope} get events --sort-by=.lastTimestamp",
        ]
    ref = report.incident.workload
    short = _kubectl_name(ref)
    commands = [f"kubectl -n {ref.namespace} describe {short}"]
    if ref.kind != "CronJob":
        commands.append(f"kubectl -n {ref.namespace} logs {short} --all-containers --tail=100")
    commands.append(
        f"kubectl -n {ref.namespace} get events --field-selector involvedObject.name={ref.name} --sort-by=.lastTimestamp"
    )
    if ref.kind in k8s.ROLLOUT_KINDS:
        commands.append(f"kubectl -n {ref.namespace} rollout history {short}")
    return commands


def undo_commands(ref: ObjectRef, revision_before: int | None) -> list[str]:
    """How to take AMOS's live change back by hand."""
    short = _kubectl_name(ref)
    if ref.kind not in k8s.ROLLOUT_KINDS:
        return [f"kubectl -n {ref.namespace} edit {short}  # revert the change shown under the attempt below"]
    if revision_before is not None:
        return [f"kubectl -n {ref.namespace} rollout undo {short} --to-revision={revision_before}"]
    return [f"kubectl -n {ref.namespace} rollout undo {short}  # one revision back: check the history first"]


def _kubectl_name(ref: ObjectRef) -> str:
    """`deploy/web`: the object as a command a person copies names it."""
    return f"{k8s.short_name(ref.kind)}/{ref.name}"


def trim_uids(text: str) -> str:
    """Pod UIDs make every line unique and say nothing to a reader."""
    return _UID.sub("", text)


def evidence_lines(report: IncidentReport) -> list[str]:
    """The incident's evidence then the diagnosis's, UIDs trimmed, each distinct line once."""
    lines: list[str] = []
    for evidence in report.incident.evidence:
        details = [
            f"container {evidence.container}" if evidence.container else "",
            f"exit code {evidence.exit_code}" if evidence.exit_code is not None else "",
            f"{evidence.restart_count} restarts" if evidence.restart_count is not None else "",
            f"since {_when(evidence.since)}" if evidence.since is not None else "",
        ]
        detail = ", ".join(part for part in details if part)
        line = (
            evidence.reason + (f": {evidence.message}" if evidence.message else "") + (f" ({detail})" if detail else "")
        )
        lines.append(line)
    lines.extend(report.evidence)
    unique: dict[str, str] = {}
    for line in lines:
        trimmed = trim_uids(line).strip()
        key = " ".join(trimmed.split()).casefold()
        if trimmed and key not in unique:
            unique[key] = trimmed
    return list(unique.values())


def _when(moment: datetime) -> str:
    return moment.isoformat(sep=" ", timespec="seconds")


def _span(start: datetime, end: datetime) -> str:
    first, last = _when(start), _when(end)
    return first if first == last else f"{first} to {last}"


def _duration(started: datetime, finished: datetime) -> str:
    seconds = max(0, round((finished - started).total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"
