"""One actor and nothing lost, on the lab: a paused leader writes nothing, two replicas never both act on a
journal entry, an API outage right after a fix is ridden out in-process, a restart or a second symptom of
one fault sends no second mail, a person's fix is not credited to AMOS, forged state is never written.

Reports go through the real outbox (cluster state + a real SMTP server), as the service sends them.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from agents.session import run_session
from core.config import Settings
from core.models import FaultKind, Incident
from core.report import ActionRecord, ActionStatus, Outcome
from lab.cluster import LabCluster
from lab.workloads import deployment, rollout_complete, wait_for
from notifications.outbox import Outbox
from orchestrator.integrity import SIGNATURE_ANNOTATION
from orchestrator.records import JournalEntry, Phase
from orchestrator.store import JournalClaimed, StateStore
from orchestrator.verify import Judge, Verdict
from service.leader import LeaderElector
from service.wiring import build_orchestrator
from tests.mailbox import Inbox, body
from tests.test_orchestrator_lab import (
    MISSING,
    amos_events,
    create,
    human_edit,
    image_of,
    incident_for,
    read,
    set_image,
    wait_pods,
)
from tools.snapshot import take_snapshot

pytestmark = pytest.mark.lab


def wait_quiet(inbox: Inbox, seconds: float = 4.0) -> list[str]:
    """The subjects after nothing new arrived for `seconds`."""
    count = -1
    while count != len(inbox.subjects()):
        count = len(inbox.subjects())
        time.sleep(seconds)
    return inbox.subjects()


def broken_web(api: client.ApiClient, namespace: str) -> Incident:
    create(api, namespace, deployment("web", "nginx:1.27", replicas=2))
    set_image(api, namespace, "web", MISSING)
    wait_pods(api, namespace, "web", {"ErrImagePull", "ImagePullBackOff"})
    return incident_for(namespace, "web", FaultKind.IMAGE_PULL, "ImagePullBackOff")


def test_a_paused_leader_writes_nothing_once_its_lease_ran_out(
    api_client: client.ApiClient, amos_api: client.ApiClient, namespace: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    StateStore(amos_api, settings).ensure_namespace()
    paused = LeaderElector(
        amos_api, settings.store_namespace, "amos-leader", "paused", lease_seconds=3, renew_seconds=1
    )
    assert paused.step() and paused.still_leads()
    incident = broken_web(api_client, namespace)
    before = read(api_client, namespace, "web")
    time.sleep(2.2)  # the process was stopped: no renewal ran; its renewal thread has not noticed yet
    assert paused.is_leader.is_set() and not paused.still_leads()
    standby = LeaderElector(amos_api, settings.store_namespace, "amos-leader", "standby", lease_seconds=3)
    wait_for(standby.step, timeout=10, what="the standby to take the lease over")

    orchestrator = build_orchestrator(
        settings, amos_api, None, still_leader=paused.still_leads, term=lambda: paused.term
    )
    assert orchestrator.process(incident) is None

    after = read(api_client, namespace, "web")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert orchestrator.store.journals() == []
    assert orchestrator.store.ledger(incident.fingerprint).attempts == 0
    assert amos_events(api_client, namespace, "web") == []


def test_two_replicas_recovering_the_same_journal_entry_act_once(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
    service_outboxes: Callable[[Settings], Outbox],
) -> None:
    settings = make_settings()
    incident = broken_web(api_client, namespace)
    old = build_orchestrator(settings, amos_api, None, identity="old-leader", term=lambda: 1)
    old.store.ensure_namespace()
    run = old.steps.begin(incident, 1, [], frozenset())
    set_image(api_client, namespace, "web", "nginx:1.27", manager="amos")  # its fix was applied, then it froze
    run.journal.actions.append(
        ActionRecord(verb="set_image", target=incident.workload, summary="set image", status=ActionStatus.APPLIED)
    )
    old.steps.journal(run, Phase.VERIFYING)

    replicas = [
        build_orchestrator(settings, amos_api, service_outboxes(settings), identity=name, term=lambda t=term: t)  # type: ignore[misc]
        for name, term in [("replica-b", 2), ("replica-c", 3)]
    ]
    results: dict[str, list[Any]] = {}

    def recover(orchestrator: Any) -> None:
        results[orchestrator.identity] = orchestrator.recover()

    threads = [threading.Thread(target=recover, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)

    fixed = [report for reports in results.values() for report in reports if report.outcome is Outcome.FIXED]
    assert len(fixed) == 1, results
    inbox.wait("] FIXED:")
    assert [s for s in wait_quiet(inbox) if "FIXED" in s] == [inbox.subjects()[0]]
    assert amos_events(api_client, namespace, "web").count("Remediated") == 1
    assert old.store.journals() == []  # concluded once, closed once


def test_a_journal_entry_claimed_by_a_newer_leader_term_refuses_the_old_leaders_next_step(
    api_client: client.ApiClient, amos_api: client.ApiClient, namespace: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    incident = broken_web(api_client, namespace)
    old = build_orchestrator(settings, amos_api, None, identity="old-leader", term=lambda: 1)
    old.store.ensure_namespace()
    run = old.steps.begin(incident, 1, [], frozenset())
    newer = StateStore(amos_api, settings, owner="new-leader")
    assert newer.claim_journal(incident.fingerprint, "new-leader", 2) is not None
    assert StateStore(amos_api, settings).claim_journal(incident.fingerprint, "older", 1) is None

    with pytest.raises(JournalClaimed):  # the frozen old leader wakes up: its next step is refused
        old.steps.journal(run, Phase.APPLYING)
    entry = newer.read_journal(incident.fingerprint)
    assert entry is not None and (entry.owner, entry.term, entry.phase) == ("new-leader", 2, Phase.SNAPSHOTTED)


def test_an_api_outage_right_after_the_fix_is_ridden_out_and_the_report_is_truthful(
    lab: LabCluster,
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
    service_outboxes: Callable[[Settings], Outbox],
) -> None:
    settings = make_settings()
    incident = broken_web(api_client, namespace)
    outbox = service_outboxes(settings)

    applied = threading.Event()
    resume = threading.Event()

    async def outage_after_the_fix(*args: Any, **kwargs: Any) -> Any:
        result = await run_session(*args, **kwargs)
        applied.set()  # the change is in; the API server goes away before AMOS journals the next step
        await asyncio.to_thread(resume.wait, 60)
        return result

    orchestrator = build_orchestrator(settings, amos_api, outbox, session_runner=outage_after_the_fix)
    orchestrator.store.ensure_namespace()
    reports: list[Any] = []
    worker = threading.Thread(target=lambda: reports.append(orchestrator.process(incident)))
    worker.start()
    assert applied.wait(120), "the session did not apply the fix"
    # Processes the lab starts die with the thread that started them, so the restart runs here.
    restart = threading.Timer(0.5, resume.set)
    restart.start()
    lab.restart_apiserver(down_seconds=8)
    worker.join(240)
    report = reports[0]

    assert report is not None and report.outcome is Outcome.FIXED, report
    assert "roll back" in " ".join(a.summary for a in report.actions)
    mail = inbox.wait("] FIXED:")
    assert "No action was taken" not in body(mail)
    assert rollout_complete(api_client, namespace, "web") and image_of(api_client, namespace, "web") == "nginx:1.27"
    assert orchestrator.store.journals() == []


def test_a_restart_with_an_open_escalation_sends_no_new_mail(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
    service_outboxes: Callable[[Settings], Outbox],
) -> None:
    create(api_client, namespace, deployment("api", "shop/api:2.0", env_from_configmap="api-config"), ready=False)
    wait_pods(api_client, namespace, "api", {"CreateContainerConfigError"})
    settings = make_settings()
    for _restart in range(3):  # each a new process: new incident id, new outbox
        outbox = service_outboxes(settings)
        orchestrator = build_orchestrator(settings, amos_api, outbox)
        orchestrator.store.ensure_namespace()
        fresh = incident_for(namespace, "api", FaultKind.CONTAINER_CONFIG, "CreateContainerConfigError")
        report = orchestrator.process(fresh)
        assert report is not None and report.outcome is Outcome.ESCALATED
        inbox.wait("] ESCALATED:")
        time.sleep(2)
        outbox.stop()  # the process ends
    assert len(wait_quiet(inbox)) == 1


def test_one_fault_with_several_symptoms_gives_one_mail(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
    service_outboxes: Callable[[Settings], Outbox],
) -> None:
    create(api_client, namespace, deployment("api", "shop/api:2.0", env_from_configmap="api-config"), ready=False)
    wait_pods(api_client, namespace, "api", {"CreateContainerConfigError"})
    settings = make_settings()
    outbox = service_outboxes(settings)
    orchestrator = build_orchestrator(settings, amos_api, outbox)
    orchestrator.store.ensure_namespace()
    for kind, reason in [
        (FaultKind.CONTAINER_CONFIG, "CreateContainerConfigError"),
        (FaultKind.ROLLOUT_STUCK, "ProgressDeadlineExceeded"),
        (FaultKind.REPLICAS_UNAVAILABLE, "ReplicasUnavailable"),
    ]:
        report = orchestrator.process(incident_for(namespace, "api", kind, reason))
        assert report is not None and report.outcome is Outcome.ESCALATED and "api-config" in report.root_cause
    inbox.wait("] ESCALATED:")
    assert len(wait_quiet(inbox)) == 1


def test_a_person_fixing_it_during_verification_gets_the_credit(
    api_client: client.ApiClient, amos_api: client.ApiClient, namespace: str, make_settings: Callable[..., Settings]
) -> None:
    incident = broken_web(api_client, namespace)
    settings = make_settings()

    class PersonEditsWhileJudging(Judge):
        def verify(self, baseline: Any, **kwargs: Any) -> Verdict:
            human_edit(api_client, namespace, "web")
            wait_for(lambda: rollout_complete(api_client, namespace, "web"), timeout=60, what="her rollout")
            return super().verify(baseline, **kwargs)

    orchestrator = build_orchestrator(
        settings, amos_api, None, judge=lambda access: PersonEditsWhileJudging(access, settings)
    )
    orchestrator.store.ensure_namespace()
    report = orchestrator.process(incident)

    assert report is not None and report.outcome is Outcome.SUPERSEDED, report
    assert "kubectl-edit" in (report.escalation_reason or "")
    ledger = orchestrator.store.ledger(incident.fingerprint)
    assert not any(note.outcome == "fixed" for note in ledger.history)


def test_forged_state_is_never_written_to_a_workload(
    api_client: client.ApiClient, amos_api: client.ApiClient, namespace: str, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    incident = broken_web(api_client, namespace)
    orchestrator = build_orchestrator(settings, amos_api, None)
    orchestrator.store.ensure_namespace()
    core = client.CoreV1Api(api_client)
    snapshot = orchestrator.steps.snapshots.save(
        take_snapshot(orchestrator.access, incident.workload, datetime.now(UTC)), incident.fingerprint
    )
    # Someone with write access to the state namespace makes the snapshot privileged and re-signs nothing.
    forged = snapshot.model_copy(deep=True)
    forged.workload["spec"]["template"]["spec"]["hostNetwork"] = True
    secret = core.read_namespaced_secret(snapshot.id, settings.store_namespace)
    assert secret.data is not None
    secret.data["snapshot.json.gz"] = base64.b64encode(gzip.compress(forged.model_dump_json().encode())).decode()
    core.replace_namespaced_secret(snapshot.id, settings.store_namespace, secret)
    assert orchestrator.steps.snapshots.load(snapshot.id) is None

    now = datetime.now(UTC)
    entry = JournalEntry(
        fingerprint=incident.fingerprint,
        incident=incident,
        workload=incident.workload,
        attempt=1,
        max_attempts=2,
        phase=Phase.ROLLING_BACK,
        snapshot_id=snapshot.id,
        started_at=now,
        updated_at=now,
    )
    orchestrator.store.write_journal(entry)
    name = orchestrator.store.journal_name(incident.fingerprint)
    core.patch_namespaced_config_map(
        name, settings.store_namespace, {"metadata": {"annotations": {SIGNATURE_ANNOTATION: uuid.uuid4().hex}}}
    )
    before = read(api_client, namespace, "web")

    assert orchestrator.recover() == []

    after = read(api_client, namespace, "web")
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert "hostNetwork" not in after["spec"]["template"]["spec"]
