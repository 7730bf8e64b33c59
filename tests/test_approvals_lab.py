"""Approve mode on the lab: AMOS proposes and changes nothing; a person approves with `kubectl annotate` (so the
API server's RBAC decides who may); AMOS re-validates and applies through the whole safety loop."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from core.actions import SetImage
from core.config import Settings
from core.models import FaultKind, ObjectRef
from core.report import Outcome
from lab import build
from lab.cluster import LabCluster
from lab.workloads import deployment, rollout_complete
from notifications import Mailer
from orchestrator.orchestrator import Orchestrator
from orchestrator.proposals import ProposalChanged, ProposalState
from orchestrator.records import GIVEN_BACK, AttemptNote
from tests.mailbox import Inbox, body
from tests.manifests import as_body
from tests.service_accounts import token_client
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
from tests.test_orchestrator_lab import (
    build as build_amos,
)

pytestmark = pytest.mark.lab


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run(
        [str(build.bin_dir() / "kubectl"), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def approve(lab: LabCluster, namespace: str, proposal_id: str) -> None:
    """`kubectl annotate` the approval, as a person would."""
    done = kubectl(lab.kubeconfig, "-n", namespace, "annotate", "deploy/web", f"amos.io/approve={proposal_id}")
    assert done.returncode == 0, done.stderr


@pytest.fixture
def approving(
    api_client: client.ApiClient, amos_api: client.ApiClient, namespace: str, make_settings: Callable[..., Settings]
) -> Callable[..., Orchestrator]:
    """The namespace in approve mode, a broken Deployment, and a way to build AMOS (as if restarted)."""
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": {"amos.io/mode": "approve"}}})
    create(api_client, namespace, deployment("web", "nginx:1.27", replicas=2))
    set_image(api_client, namespace, "web", MISSING)
    wait_pods(api_client, namespace, "web", {"ErrImagePull", "ImagePullBackOff"})
    web = ObjectRef(kind="Deployment", namespace=namespace, name="web")

    def make(**overrides: Any) -> Orchestrator:
        settings = make_settings(**overrides)
        orchestrator = build_amos(settings, amos_api, Mailer(settings), fault_present=lambda ref: ref == web)
        orchestrator.store.ensure_namespace()
        return orchestrator

    return make


def propose(orchestrator: Orchestrator, namespace: str) -> str:
    report = orchestrator.process(incident_for(namespace, "web", FaultKind.IMAGE_PULL, "ImagePullBackOff"))
    assert report is not None and report.outcome is Outcome.APPROVAL_NEEDED and report.proposal_id
    return report.proposal_id


def test_approve_mode_stores_a_proposal_sends_it_and_changes_nothing(
    api_client: client.ApiClient, namespace: str, inbox: Inbox, approving: Callable[..., Orchestrator]
) -> None:
    before = read(api_client, namespace, "web")
    orchestrator = approving()
    proposal_id = propose(orchestrator, namespace)

    stored = orchestrator.approvals.proposals.get(proposal_id)
    assert stored is not None and stored.state is ProposalState.PENDING
    assert [a.summary() for a in stored.actions] == ["roll back Deployment/web to revision 1"]
    assert stored.generation == before["metadata"]["generation"]
    mail = body(inbox.wait("] APPROVAL NEEDED:"))
    assert f"amos.io/approve={proposal_id}" in mail and "+containers[app].image: nginx:1.27" in mail
    assert read(api_client, namespace, "web")["metadata"]["generation"] == before["metadata"]["generation"]
    assert "ProposalCreated" in amos_events(api_client, namespace, "web")
    # The same fault again while the proposal waits: no second proposal, no second mail.
    assert orchestrator.process(incident_for(namespace, "web", FaultKind.IMAGE_PULL, "ImagePullBackOff")) is None


def test_kubectl_annotate_approves_and_amos_applies_verifies_and_names_the_approver_even_after_a_restart(
    lab: LabCluster, api_client: client.ApiClient, namespace: str, inbox: Inbox, approving: Callable[..., Orchestrator]
) -> None:
    proposal_id = propose(approving(), namespace)
    restarted = approving()  # a new AMOS process: the proposal is kept in the cluster

    approve(lab, namespace, proposal_id)
    reports = restarted.check_approvals()

    assert [r.outcome for r in reports] == [Outcome.FIXED], [r.escalation_reason for r in reports]
    assert reports[0].approved_by == "kubectl-annotate"
    assert rollout_complete(api_client, namespace, "web") and image_of(api_client, namespace, "web") == "nginx:1.27"
    assert "kubectl-annotate" in body(inbox.wait("] FIXED:"))
    stored = restarted.approvals.proposals.get(proposal_id)
    assert stored is not None and stored.state is ProposalState.APPROVED and stored.decided_by == "kubectl-annotate"
    events = amos_events(api_client, namespace, "web")
    assert {"ProposalApproved", "Remediating", "FixApplied", "Remediated"} <= set(events)
    ledger = restarted.store.ledger(incident_for(namespace, "web", FaultKind.IMAGE_PULL, "x").fingerprint)
    assert ledger.history[-1].outcome == "fixed" and ledger.history[-1].attempt == 1  # counted like any attempt
    assert restarted.check_approvals() == []  # applied once


def test_a_user_who_may_not_patch_the_workload_cannot_approve(
    api_client: client.ApiClient, namespace: str, approving: Callable[..., Orchestrator]
) -> None:
    proposal_id = propose(approving(), namespace)
    core, rbac = client.CoreV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_service_account(namespace, as_body({"metadata": {"name": "viewer"}}))
    rbac.create_namespaced_role(
        namespace,
        as_body(
            {
                "metadata": {"name": "viewer"},
                "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}],
            }
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        as_body(
            {
                "metadata": {"name": "viewer"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "viewer"},
                "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}],
            }
        ),
    )
    with token_client(api_client, namespace, "viewer") as viewer:
        seen = client.AppsV1Api(viewer).read_namespaced_deployment("web", namespace)
        assert seen.metadata is not None and seen.metadata.name == "web"
        with pytest.raises(ApiException) as refused:
            client.AppsV1Api(viewer).patch_namespaced_deployment(
                "web", namespace, {"metadata": {"annotations": {"amos.io/approve": proposal_id}}}
            )
    assert refused.value.status == 403
    assert "amos.io/approve" not in (read(api_client, namespace, "web")["metadata"].get("annotations") or {})


def test_an_edit_after_the_proposal_refuses_it_and_asks_for_a_fresh_diagnosis(
    lab: LabCluster, api_client: client.ApiClient, namespace: str, approving: Callable[..., Orchestrator]
) -> None:
    orchestrator = approving()
    proposal_id = propose(orchestrator, namespace)
    human_edit(api_client, namespace, "web")
    kubectl(lab.kubeconfig, "-n", namespace, "annotate", "deploy/web", f"amos.io/approve={proposal_id}")
    submitted: list[Any] = []
    orchestrator.approvals._resubmit = submitted.append  # the dispatcher is not running here

    reports = orchestrator.check_approvals()

    assert [r.outcome for r in reports] == [Outcome.ESCALATED]
    assert "changed since proposal" in (reports[0].escalation_reason or "")
    assert image_of(api_client, namespace, "web") == MISSING
    assert [i.workload.name for i in submitted] == ["web"]
    stored = orchestrator.approvals.proposals.get(proposal_id)
    assert stored is not None and stored.state is ProposalState.SUPERSEDED


def test_an_expired_or_rejected_proposal_changes_nothing(
    lab: LabCluster, api_client: client.ApiClient, namespace: str, approving: Callable[..., Orchestrator]
) -> None:
    orchestrator = approving(proposal_ttl_seconds=1)
    expired_id = propose(orchestrator, namespace)
    later = datetime.now(UTC) + timedelta(seconds=5)
    orchestrator.approvals._clock = lambda: later
    reports = orchestrator.check_approvals()
    assert [r.outcome for r in reports] == [Outcome.ESCALATED] and "expired" in (reports[0].escalation_reason or "")

    orchestrator = approving()
    rejected_id = propose(orchestrator, namespace)
    assert rejected_id != expired_id
    kubectl(lab.kubeconfig, "-n", namespace, "annotate", "deploy/web", f"amos.io/reject={rejected_id}")
    reports = orchestrator.check_approvals()
    assert [r.outcome for r in reports] == [Outcome.ESCALATED]
    assert "rejected by kubectl-annotate" in (reports[0].escalation_reason or "")
    assert image_of(api_client, namespace, "web") == MISSING


def test_python_main_approve_annotates_as_the_caller_and_amos_applies_it(
    api_client: client.ApiClient,
    namespace: str,
    approving: Callable[..., Orchestrator],
    make_settings: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from service import approval_cli

    orchestrator = approving()
    proposal_id = propose(orchestrator, namespace)
    settings = make_settings()
    assert approval_cli.list_proposals(settings, api_client) == 0
    assert proposal_id in capsys.readouterr().out

    assert approval_cli.decide(settings, api_client, proposal_id, approve=True) == 0
    reports = orchestrator.check_approvals()

    assert [r.outcome for r in reports] == [Outcome.FIXED], [r.escalation_reason for r in reports]
    assert (reports[0].approved_by or "").startswith("amos-approve/")  # the caller, as the API server knows it
    assert image_of(api_client, namespace, "web") == "nginx:1.27"
    assert approval_cli.decide(settings, api_client, proposal_id, approve=True) == 2  # already decided


def test_two_amos_processes_racing_on_one_approved_proposal_apply_it_exactly_once(
    lab: LabCluster, api_client: client.ApiClient, namespace: str, inbox: Inbox, approving: Callable[..., Orchestrator]
) -> None:
    proposal_id = propose(approving(), namespace)
    first, second = approving(), approving()  # the service and adk web, say
    approve(lab, namespace, proposal_id)
    read_by_first, read_by_second = (
        first.approvals.proposals.get(proposal_id),
        second.approvals.proposals.get(proposal_id),
    )
    assert read_by_first is not None and read_by_second is not None  # both saw it pending, at one resourceVersion

    won = first.approvals._check(read_by_first)
    lost = second.approvals._check(read_by_second)  # its read is stale now: it re-reads, and finds it decided

    assert won is not None and won.outcome is Outcome.FIXED, won and won.escalation_reason
    assert lost is None
    assert [r.outcome for r in first.reports + second.reports] == [Outcome.FIXED]
    ledger = first.store.ledger(incident_for(namespace, "web", FaultKind.IMAGE_PULL, "x").fingerprint)
    assert [(note.attempt, note.outcome) for note in ledger.history] == [(1, "fixed")]  # counted once
    inbox.wait("] FIXED:")
    assert len([subject for subject in inbox.subjects() if "] FIXED:" in subject]) == 1  # one report mailed
    assert [e for e in amos_events(api_client, namespace, "web") if e == "ProposalApproved"] == ["ProposalApproved"]


def test_a_proposal_changed_since_it_was_read_is_never_overwritten(
    namespace: str, approving: Callable[..., Orchestrator]
) -> None:
    orchestrator = approving()
    proposal_id = propose(orchestrator, namespace)
    store = orchestrator.approvals.proposals
    read = store.get(proposal_id)
    assert read is not None
    rejected = store.save(read.model_copy(update={"state": ProposalState.REJECTED, "decided_by": "alice"}))

    with pytest.raises(ProposalChanged):
        store.save(read.model_copy(update={"state": ProposalState.APPROVED, "decided_by": "bob"}))

    stored = store.get(proposal_id)
    assert stored is not None and stored.state is ProposalState.REJECTED and stored.decided_by == "alice"
    assert stored.resource_version == rejected.resource_version != read.resource_version


def test_a_fix_a_person_chose_in_approve_mode_is_proposed_as_chosen_not_re_diagnosed(
    api_client: client.ApiClient, namespace: str, inbox: Inbox, approving: Callable[..., Orchestrator]
) -> None:
    before = read(api_client, namespace, "web")
    orchestrator = approving()
    chosen = SetImage(namespace=namespace, name="web", container="app", image="nginx:1.27")
    web = ObjectRef(kind="Deployment", namespace=namespace, name="web")
    report = orchestrator.apply_actions(web, [chosen], requested_by="adk web", reason="try 1.27")

    assert report is not None and report.outcome is Outcome.APPROVAL_NEEDED and report.proposal_id
    stored = orchestrator.approvals.proposals.get(report.proposal_id)
    assert stored is not None and stored.actions == [chosen]  # the offline diagnoser would roll back instead
    assert read(api_client, namespace, "web")["metadata"]["generation"] == before["metadata"]["generation"]
    assert "set image of container app" in body(inbox.wait("] APPROVAL NEEDED:"))


def left_applying(orchestrator: Orchestrator, proposal_id: str, decided_at: datetime | None = None) -> None:
    """The proposal as a process killed right after winning it leaves it: APPLYING, nothing else written."""
    store = orchestrator.approvals.proposals
    read = store.get(proposal_id)
    assert read is not None
    moved = {"state": ProposalState.APPLYING, "decided_by": "kubectl-annotate"}
    store.save(read.model_copy(update={**moved, "decided_at": decided_at or read.decided_at or datetime.now(UTC)}))


@pytest.mark.parametrize("given_back", [False, True], ids=["before-its-journal", "journaled-then-given-back"])
def test_an_approval_a_stopped_amos_left_unapplied_is_applied_once_at_the_next_check(
    lab: LabCluster,
    api_client: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    approving: Callable[..., Orchestrator],
    given_back: bool,
) -> None:
    proposal_id = propose(approving(), namespace)
    approve(lab, namespace, proposal_id)
    left_applying(approving(), proposal_id)  # killed before anything was applied
    restarted = approving()
    fingerprint = incident_for(namespace, "web", FaultKind.IMAGE_PULL, "x").fingerprint
    if given_back:  # killed once its journal was written; recovery found nothing applied and gave the count back
        left = restarted.approvals.proposals.get(proposal_id)
        assert left is not None
        note = AttemptNote(attempt=1, incident_id=left.incident.id, at=datetime.now(UTC), outcome=GIVEN_BACK)
        restarted.store.update_ledger(fingerprint, left.workload, lambda ledger: ledger.note(note))

    reports = restarted.check_approvals()

    assert [r.outcome for r in reports] == [Outcome.FIXED], [r.escalation_reason for r in reports]
    assert reports[0].approved_by == "kubectl-annotate"
    assert rollout_complete(api_client, namespace, "web") and image_of(api_client, namespace, "web") == "nginx:1.27"
    stored = restarted.approvals.proposals.get(proposal_id)
    assert stored is not None and stored.state is ProposalState.APPROVED and stored.decided_by == "kubectl-annotate"
    ledger = restarted.store.ledger(fingerprint)
    assert [(note.attempt, note.outcome) for note in ledger.history][-1:] == [(1, "fixed")]
    assert len(ledger.history) == (2 if given_back else 1)
    assert "kubectl-annotate" in body(inbox.wait("] FIXED:"))
    assert restarted.check_approvals() == []


def test_an_approval_left_applying_after_its_attempt_ran_is_closed_and_not_applied_again(
    lab: LabCluster, api_client: client.ApiClient, namespace: str, inbox: Inbox, approving: Callable[..., Orchestrator]
) -> None:
    first = approving()
    proposal_id = propose(first, namespace)
    approve(lab, namespace, proposal_id)
    assert [r.outcome for r in first.check_approvals()] == [Outcome.FIXED]
    left_applying(first, proposal_id)  # killed after the report, before the proposal was closed
    fixed = read(api_client, namespace, "web")

    restarted = approving()
    assert restarted.check_approvals() == []

    stored = restarted.approvals.proposals.get(proposal_id)
    assert stored is not None and stored.state is ProposalState.APPROVED and "recovery" in stored.note
    assert read(api_client, namespace, "web")["metadata"]["generation"] == fixed["metadata"]["generation"]
    ledger = restarted.store.ledger(incident_for(namespace, "web", FaultKind.IMAGE_PULL, "x").fingerprint)
    assert [(note.attempt, note.outcome) for note in ledger.history] == [(1, "fixed")]  # not counted again
    inbox.wait("] FIXED:")
    assert restarted.reports == []


def test_an_approval_the_guard_rails_hold_stays_approved_and_is_applied_once_they_let_it_through(
    lab: LabCluster,
    api_client: client.ApiClient,
    namespace: str,
    approving: Callable[..., Orchestrator],
    make_settings: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from service import approval_cli

    orchestrator = approving(workload_cooldown_seconds=3600, approval_check_seconds=0.5)
    web = ObjectRef(kind="Deployment", namespace=namespace, name="web")
    proposal_id = propose(orchestrator, namespace)
    orchestrator.store.update_workload_state(web, lambda state: setattr(state, "last_action_at", datetime.now(UTC)))
    approve(lab, namespace, proposal_id)
    before = read(api_client, namespace, "web")

    assert orchestrator.check_approvals() == []  # the workload's cooldown defers it

    held = orchestrator.approvals.proposals.get(proposal_id)
    assert held is not None and held.state is ProposalState.PENDING and held.held_until is not None
    assert "held by the guard rails" in held.note
    assert read(api_client, namespace, "web")["metadata"]["generation"] == before["metadata"]["generation"]
    assert "Deferred" in amos_events(api_client, namespace, "web")
    assert approval_cli.list_proposals(make_settings(), api_client) == 0
    assert "held by the guard rails" in capsys.readouterr().out  # `main.py proposals` says why it still waits
    assert orchestrator.check_approvals() == []  # not tried again before its time

    orchestrator.store.update_workload_state(web, lambda state: setattr(state, "last_action_at", None))
    time.sleep(max(0.0, (held.held_until - datetime.now(UTC)).total_seconds()) + 0.1)  # its time comes
    reports = orchestrator.check_approvals()

    assert [r.outcome for r in reports] == [Outcome.FIXED], [r.escalation_reason for r in reports]
    assert image_of(api_client, namespace, "web") == "nginx:1.27"
    stored = orchestrator.approvals.proposals.get(proposal_id)
    assert stored is not None and stored.state is ProposalState.APPROVED and stored.decided_by == "kubectl-annotate"
    approvals = [e for e in amos_events(api_client, namespace, "web") if e == "ProposalApproved"]
    assert approvals == ["ProposalApproved"]  # recorded once, however often it was tried
