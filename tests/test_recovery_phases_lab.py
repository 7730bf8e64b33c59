"""Recovery from every journal phase, on the lab: AMOS is killed (-9) at a chosen step and restarted, and the
resumed run must end as an uninterrupted run of the same fault ends.

Each test breaks two identical workloads. `steady` is handled by one AMOS from start to end (the reference);
`killed` by AMOS in a child process that a hook in its collaborators (session runner, judge, store) stops at
the step: it prints the step's name and blocks, and the test kills it on that line (no sleeps, no polling for
the moment). A new AMOS then recovers, and, while the fault persists, gets the next incident as the detector
would raise it. Both end states (spec, attempt count, journal, reports, mails, Events, block) are compared; the
few differences a crash must leave are listed per step in `CRASHES`, with the reason.

Reports go through the real outbox (cluster state + a real SMTP server), as the service sends them.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from pydantic import BaseModel

from core.config import Settings
from core.models import FaultKind, Incident
from core.report import IncidentReport, Outcome
from lab.cluster import LabCluster
from lab.workloads import deployment, pods_of, rollout_complete, wait_for, waiting_reasons
from notifications.delivery import ChannelName
from notifications.outbox import Outbox
from notifications.summary import attempt_views
from orchestrator.orchestrator import Orchestrator
from orchestrator.records import JournalEntry, Phase
from orchestrator.store import StateStore
from service.wiring import build_orchestrator
from tests.mailbox import Inbox, body
from tests.test_orchestrator_lab import (
    MISSING,
    create,
    image_of,
    incident_for,
    set_image,
    spec_of,
    wait_pods,
    wait_revision,
)

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parent.parent
CHILD_FIELDS = {
    "namespaces",
    "state_namespace",
    "model_provider",
    "leader_election",
    "verify_timeout_seconds",
    "workload_cooldown_seconds",
    "smtp_host",
    "smtp_port",
    "smtp_security",
    "smtp_timeout_seconds",
    "engineer_email",
    "from_email",
}
CHILD_TIMEOUT_SECONDS = 240.0  # the child reaches its step within this, or the test fails (never a pass by time)
KILLED, STEADY = "killed", "steady"


class Step(StrEnum):
    """Where the child AMOS is killed."""

    COUNTED = "counted"  # the snapshot, the journal entry (SNAPSHOTTED) and the count are stored; nothing changed
    APPLIED = "applied"  # the fix is applied and journaled (APPLYING); the session has not returned
    VERIFYING = "verifying"  # the judge watches the fix (VERIFYING)
    RESTORING = "restoring"  # the fix did not help; ROLLING_BACK is journaled, the snapshot not yet put back
    RESTORED = "restored"  # the snapshot is put back (ROLLING_BACK); its pods not yet checked
    DONE = "done"  # the fix is verified and DONE journaled; no report built yet
    REPORTED = "reported"  # the report is journaled, in the outbox and mailed; the journal entry not yet closed


CHILD = textwrap.dedent("""
    import json, logging, sys, threading, time
    sys.path.insert(0, {repo!r})
    from kubernetes import config
    from agents.session import run_session
    from core.config import Settings
    from core.models import Incident
    from notifications.delivery import ChannelName
    from notifications.outbox import Outbox, OutboxPolicy
    from orchestrator.records import Phase
    from orchestrator.verify import Judge
    from service.wiring import build_orchestrator

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    kubeconfig, settings_json, incident_json, step = sys.argv[1:5]
    settings = Settings(**json.loads(settings_json))
    incident = Incident.model_validate_json(incident_json)
    api = config.new_client_from_config(config_file=kubeconfig)

    def die_here():
        print(step, flush=True)  # the test kills this process -9 on this line
        threading.Event().wait()

    async def session(*args, **kwargs):
        result = await run_session(*args, **kwargs)
        if step == "applied":
            die_here()
        return result

    class StoppingJudge(Judge):
        def verify(self, *args, **kwargs):
            if step == "verifying":
                die_here()
            return super().verify(*args, **kwargs)

        def verify_restore(self, *args, **kwargs):
            if step == "restored":
                die_here()
            return super().verify_restore(*args, **kwargs)

    outbox = Outbox.from_settings(api, settings, identity="amos-child")
    outbox.policy = OutboxPolicy(initial_backoff_seconds=0.2, max_backoff_seconds=1.0, poll_seconds=0.5)
    outbox.start()
    amos = build_orchestrator(
        settings, api, outbox, session_runner=session, judge=lambda access: StoppingJudge(access, settings)
    )
    store = amos.store

    def die_after(write, when):
        def written(*args):
            result = write(*args)
            if when(*args):
                die_here()
            return result
        return written

    def die_once_mailed(fingerprint):  # replaces the close of the journal entry, which comes after the report
        while outbox.records.pending(ChannelName.EMAIL):  # the outbox sent the mail and recorded it
            time.sleep(0.1)
        die_here()

    if step == "counted":  # the attempt's count is the first ledger write of an incident
        store.update_ledger = die_after(store.update_ledger, lambda *args: True)
    elif step == "restoring":
        store.write_journal = die_after(store.write_journal, lambda entry: entry.phase is Phase.ROLLING_BACK)
    elif step == "done":
        store.write_journal = die_after(
            store.write_journal, lambda entry: entry.phase is Phase.DONE and entry.report is None
        )
    elif step == "reported":
        store.delete_journal = die_once_mailed
    store.ensure_namespace()
    amos.process(incident)
    print("finished without reaching", step, flush=True)
""")


# --- the faults -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """A fault set up on a workload: how it is raised as an incident, and what its fix sets."""

    kind: FaultKind
    reason: str
    fixed_image: str  # the image the fix puts in

    def incident(self, namespace: str, name: str) -> Incident:
        return incident_for(namespace, name, self.kind, self.reason)


BAD_IMAGE = Fault(FaultKind.IMAGE_PULL, "ImagePullBackOff", "nginx:1.27")  # the fix (a rollback) helps
CRASHING = Fault(FaultKind.CRASH_LOOP, "CrashLoopBackOff", "shop/api:1.5-crash")  # every revision crashes


def break_workloads(api: client.ApiClient, namespace: str, fault: Fault) -> None:
    """The fault on both workloads, each with a revision in its history that the offline rules roll back to
    (crashing: two, 1.5-crash then 1.0-crash, so each of the two attempts has a template not yet seen failing)."""
    if fault is BAD_IMAGE:
        for name in (KILLED, STEADY):
            create(api, namespace, deployment(name, "nginx:1.27", replicas=2))
            set_image(api, namespace, name, MISSING)
        for name in (KILLED, STEADY):
            wait_pods(api, namespace, name, {"ErrImagePull", "ImagePullBackOff"})
        return
    for name in (KILLED, STEADY):
        create(api, namespace, deployment(name, "shop/api:1.0-crash"), ready=False)
    for name in (KILLED, STEADY):
        wait_pods(api, namespace, name, {"CrashLoopBackOff"})
        set_image(api, namespace, name, "shop/api:1.5-crash")
        wait_revision(api, namespace, name, 2)
        set_image(api, namespace, name, "shop/api:2.0-crash")
    for name in (KILLED, STEADY):
        wait_for(
            lambda n=name: crash_looping_on(api, namespace, n, "shop/api:2.0-crash"),  # type: ignore[misc]
            timeout=90,
            what=f"{name}'s revision 3 crash-looping",
        )


def crash_looping_on(api: client.ApiClient, namespace: str, name: str, image: str) -> bool:
    """A pod running `image` crash-loops: the diagnosis sees the new revision fail (not only the old one's pod)."""
    return any(
        "CrashLoopBackOff" in waiting_reasons(pod)
        for pod in pods_of(api, namespace, f"app={name}")
        if pod.spec is not None and {container.image for container in pod.spec.containers} == {image}
    )


# --- the crashes ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Crash:
    """What the journal and the workload show when AMOS dies at a step, and what the resumed run may show more."""

    phase: Phase
    counted: int  # the ledger's count at the kill
    fix_in_place: bool | None  # the workload runs the fix (True), is as before AMOS (False), or is back to it (None)
    extra_mails: tuple[str, ...] = ()  # mails the resumed run sends besides the uninterrupted run's
    extra_step_events: dict[str, int] = field(default_factory=dict)
    extra_report_events: dict[str, int] = field(default_factory=dict)


def rolled_back_on_its_own(phase: Phase, fix_in_place: bool | None) -> Crash:
    """A recovered attempt that was rolled back is reported on its own: the process that would have folded it
    into one report with the next attempt is gone (its mail and its outcome Event are the difference)."""
    return Crash(phase, 1, fix_in_place, extra_mails=("ROLLED BACK",), extra_report_events={"RolledBack": 1})


CRASHES: dict[Step, Crash] = {
    # Recovery closes the entry and gives the count back; the next incident is attempt 1 again. The
    # interrupted attempt's Remediating Event stays: it did begin.
    Step.COUNTED: Crash(Phase.SNAPSHOTTED, 1, False, extra_step_events={"Remediating": 1}),
    Step.APPLIED: Crash(Phase.APPLYING, 1, True),
    Step.VERIFYING: rolled_back_on_its_own(Phase.VERIFYING, True),
    Step.RESTORING: rolled_back_on_its_own(Phase.ROLLING_BACK, True),
    Step.RESTORED: rolled_back_on_its_own(Phase.ROLLING_BACK, None),
    Step.DONE: Crash(Phase.DONE, 0, True),
    # The report is handed to the outbox again and folds into the one sent (same key): one mail. Its outcome
    # Event is named by that key too: found already recorded, not written twice.
    Step.REPORTED: Crash(Phase.DONE, 0, True),
}


@dataclass(frozen=True)
class Killed:
    """What a kill left, and what the restarted AMOS recovered from it."""

    before: dict[str, Any]  # the spec before AMOS changed anything
    journal: JournalEntry  # at the kill
    counted: int  # the ledger's count at the kill
    spec: dict[str, Any]  # at the kill
    amos: Orchestrator  # the restarted AMOS
    recovered: list[IncidentReport]
    recounted: int  # the ledger's count once recovered

    @property
    def image(self) -> str:
        return str(self.spec["template"]["spec"]["containers"][0]["image"])


def first_line(child: subprocess.Popen[str], timeout: float) -> str:
    """The child's first line on stdout ("" when it ends or says nothing in time)."""
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    return child.stdout.readline().strip() if ready else ""


def kill_and_restart(
    lab: LabCluster,
    tmp_path: Path,
    settings: Settings,
    incident: Incident,
    step: Step,
    api: client.ApiClient,
    amos_api: client.ApiClient,
    outbox: Outbox,
) -> Killed:
    """AMOS handles `incident` in a child process killed -9 at `step`; a new AMOS recovers what it left."""
    ref = incident.workload
    before = spec_of(api, ref.namespace, ref.name)
    script = tmp_path / "amos_child.py"
    script.write_text(CHILD.format(repo=str(REPO)))
    values = settings.model_dump(mode="json", include=CHILD_FIELDS)
    log = open(tmp_path / f"child-{step.value}.log", "w")  # noqa: SIM115 - closed after the kill
    child = subprocess.Popen(
        [sys.executable, str(script), str(lab.kubeconfig), json.dumps(values), incident.model_dump_json(), step],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        reached = first_line(child, CHILD_TIMEOUT_SECONDS)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        log.close()
    assert reached == step.value, f"the child did not stop at {step.value} ({reached!r}; see {log.name})"
    assert child.returncode == -signal.SIGKILL

    store = StateStore(api, settings)
    journal = store.read_journal(incident.fingerprint)
    assert journal is not None, "the kill left no journal entry"
    counted, spec = store.ledger(incident.fingerprint).attempts, spec_of(api, ref.namespace, ref.name)
    restarted = build_orchestrator(settings, amos_api, outbox)
    recovered = restarted.recover()
    recounted = store.ledger(incident.fingerprint).attempts
    return Killed(before, journal, counted, spec, restarted, recovered, recounted)


def until_settled(
    amos: Orchestrator, fault: Fault, namespace: str, name: str, reports: list[IncidentReport]
) -> list[IncidentReport]:
    """Next incidents while the fault persists unsettled (nothing reported, or a rollback), as the detector raises them."""
    reports = list(reports)
    while not reports or reports[-1].outcome is Outcome.ROLLED_BACK:
        assert len(reports) <= amos.settings.max_attempts, reports
        report = amos.process(fault.incident(namespace, name))
        assert report is not None, "a persisting fault got no report"
        reports.append(report)
    return reports


# --- the end state --------------------------------------------------------------------------------------------


class EndState(BaseModel):
    """How a fault ended, as the cluster, AMOS's records and the engineer see it."""

    image: str
    ready: bool  # the rollout is complete
    attempts: int  # the ledger's count
    notes: list[str]  # the ledger's history of attempt outcomes
    journal_left: bool
    blocked: bool
    outcome: Outcome  # of the last report
    attempt: int  # of the last report
    # per attempt, over every report: live, rolled back or nothing applied, and its actions
    attempt_states: dict[int, str]
    mails: list[str]  # the label of every mail about the workload, in order
    step_events: dict[str, int]  # AMOS's Events about its steps
    report_events: dict[str, int]  # AMOS's outcome Events (one per report handed over)


def mail_labels(inbox: Inbox, namespace: str, name: str) -> list[str]:
    target = f"Deployment/{name} -n {namespace}"
    return [m.group(1) for s in inbox.subjects() if target in s and (m := re.search(r"\] ([A-Z][A-Z ]*):", s))]


def last_mail(inbox: Inbox, namespace: str, name: str, label: str) -> str:
    """The body of the last mail labelled `label` about the workload `name`."""
    subject = f"] {label}: "
    target = f"Deployment/{name} -n {namespace}"
    inbox.wait(subject)
    found = [m for m in inbox.messages if subject in str(m["Subject"]) and target in str(m["Subject"])]
    assert found, f"no {label} mail about {name}: {inbox.subjects()}"
    return body(found[-1])


def end_state(
    api: client.ApiClient,
    settings: Settings,
    inbox: Inbox,
    service_outboxes: list[Outbox],
    namespace: str,
    name: str,
    reports: list[IncidentReport],
) -> EndState:
    for outbox in service_outboxes:  # every report handed over is sent (and recorded) before the mails are counted
        wait_for(lambda o=outbox: not o.records.pending(ChannelName.EMAIL), timeout=60, what="the outbox to send")  # type: ignore[misc]
    incident = reports[-1].incident
    store = StateStore(api, settings)
    ledger = store.ledger(incident.fingerprint)
    blocked_until = store.workload_state(incident.workload).blocked_until
    events = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    ours = [e for e in events.items if e.reporting_component == "amos"]
    states: dict[int, str] = {}
    for report in reports:
        for view in attempt_views(report):
            states[view.number] = f"{view.state}: " + ", ".join(f"{a.verb} {a.status.value}" for a in view.actions)
    return EndState(
        image=image_of(api, namespace, name),
        ready=rollout_complete(api, namespace, name),
        attempts=ledger.attempts,
        notes=[note.outcome for note in ledger.history],
        journal_left=store.read_journal(incident.fingerprint) is not None,
        blocked=blocked_until is not None and blocked_until > datetime.now(UTC),
        outcome=reports[-1].outcome,
        attempt=reports[-1].attempt,
        attempt_states=states,
        mails=mail_labels(inbox, namespace, name),
        step_events=Counter(str(e.reason) for e in ours if e.action != "Report"),
        report_events=Counter(str(e.reason) for e in ours if e.action == "Report"),
    )


def plus(counts: dict[str, int], extra: dict[str, int]) -> dict[str, int]:
    return dict(Counter(counts) + Counter(extra))


def resume_and_compare(
    lab: LabCluster,
    api: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    settings: Settings,
    service_outboxes: Callable[[Settings], Outbox],
    tmp_path: Path,
    fault: Fault,
    step: Step,
) -> tuple[Killed, list[IncidentReport], EndState, EndState]:
    """Both runs of `fault`: `steady` uninterrupted, `killed` killed at `step` and resumed; their end states."""
    break_workloads(api, namespace, fault)
    reference_outbox = service_outboxes(settings)
    reference = build_orchestrator(settings, amos_api, reference_outbox)
    reference.store.ensure_namespace()
    first = reference.process(fault.incident(namespace, STEADY))
    assert first is not None
    steady = until_settled(reference, fault, namespace, STEADY, [first])

    restart_outbox = service_outboxes(settings)
    killed = kill_and_restart(
        lab, tmp_path, settings, fault.incident(namespace, KILLED), step, api, amos_api, restart_outbox
    )
    crash = CRASHES[step]
    assert killed.journal.phase is crash.phase, killed.journal
    assert killed.counted == crash.counted  # counted before the change; the kill does not reset it
    if crash.fix_in_place is not None:
        assert (killed.image == fault.fixed_image) is crash.fix_in_place, killed.image
    resumed = until_settled(killed.amos, fault, namespace, KILLED, killed.recovered)

    outboxes_used = [reference_outbox, restart_outbox]
    return (
        killed,
        resumed,
        end_state(api, settings, inbox, outboxes_used, namespace, STEADY, steady),
        end_state(api, settings, inbox, outboxes_used, namespace, KILLED, resumed),
    )


def assert_ends_alike(step: Step, uninterrupted: EndState, resumed: EndState) -> None:
    crash = CRASHES[step]
    expected = uninterrupted.model_copy(
        update={
            "mails": list(crash.extra_mails) + uninterrupted.mails,
            "step_events": plus(uninterrupted.step_events, crash.extra_step_events),
            "report_events": plus(uninterrupted.report_events, crash.extra_report_events),
        }
    )
    assert resumed == expected


# --- the tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [Step.COUNTED, Step.APPLIED, Step.DONE, Step.REPORTED])
def test_killed_at_any_step_of_a_fix_that_helps_the_resumed_run_ends_fixed_as_an_uninterrupted_one(
    step: Step,
    lab: LabCluster,
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
    service_outboxes: Callable[[Settings], Outbox],
    tmp_path: Path,
) -> None:
    settings = make_settings()
    killed, resumed, uninterrupted, end = resume_and_compare(
        lab, api_client, amos_api, namespace, inbox, settings, service_outboxes, tmp_path, BAD_IMAGE, step
    )

    assert uninterrupted.outcome is Outcome.FIXED and uninterrupted.attempt == 1
    assert uninterrupted.image == "nginx:1.27" and uninterrupted.ready and uninterrupted.notes[-1] == "fixed"
    assert uninterrupted.mails == ["FIXED"] and not uninterrupted.journal_left
    assert_ends_alike(step, uninterrupted, end)
    if step is Step.COUNTED:  # nothing had changed: the attempt is given back and the next incident is attempt 1
        assert killed.image == MISSING and killed.recovered == [] and killed.recounted == 0
        assert [r.attempt for r in resumed] == [1]
    else:
        assert [r.outcome for r in killed.recovered] == [Outcome.FIXED] and killed.recovered[0].attempt == 1
    if step is Step.APPLIED:  # the verdict came after the restart, and the report says so
        assert "after AMOS restarted" in killed.recovered[0].verification
        assert "after AMOS restarted" in last_mail(inbox, namespace, KILLED, "FIXED")


@pytest.mark.parametrize("step", [Step.VERIFYING, Step.RESTORING, Step.RESTORED])
def test_killed_at_any_step_of_a_fix_that_does_not_help_the_resumed_run_is_restored_and_escalates_as_an_uninterrupted_one(
    step: Step,
    lab: LabCluster,
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
    service_outboxes: Callable[[Settings], Outbox],
    tmp_path: Path,
) -> None:
    settings = make_settings(workload_cooldown_seconds=0)  # the next attempt need not wait 5 minutes
    killed, resumed, uninterrupted, end = resume_and_compare(
        lab, api_client, amos_api, namespace, inbox, settings, service_outboxes, tmp_path, CRASHING, step
    )

    assert uninterrupted.outcome is Outcome.ESCALATED and uninterrupted.attempt == 2 and uninterrupted.attempts == 2
    assert uninterrupted.image == "shop/api:2.0-crash" and uninterrupted.blocked
    assert_ends_alike(step, uninterrupted, end)
    assert spec_of(api_client, namespace, KILLED) == killed.before  # the spec is the snapshot's again
    if step is Step.RESTORED:
        assert killed.spec == killed.before  # put back before the kill
    # The recovered attempt is restored, counted and reported; the next incident is the last attempt.
    assert [r.outcome for r in killed.recovered] == [Outcome.ROLLED_BACK] and killed.recovered[0].rolled_back
    assert killed.recounted == 1
    assert [r.attempt for r in resumed] == [1, 2] and resumed[-1].outcome is Outcome.ESCALATED
    assert "Attempt:     2 of 2" in last_mail(inbox, namespace, KILLED, "ESCALATED")
