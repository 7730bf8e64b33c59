"""`adk web` is never a second actor: it writes only while it holds the service's leader Lease (on the lab).

With the service holding a live Lease, a fix from `adk web` changes nothing and names the holder, and
an approval is only written as the annotation, for the service to apply. With nobody holding it,
`adk web` takes the Lease for the write, keeps it while the fix runs, and gives it up afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from core.actions import Rollback
from core.config import Settings
from core.models import FaultKind, ObjectRef, fingerprint
from core.report import Outcome
from lab.cluster import LabCluster
from lab.workloads import deployment
from notifications import Mailer
from orchestrator.proposals import APPROVE_ANNOTATION, ProposalState
from orchestrator.snapshots import SnapshotStore
from orchestrator.store import StateStore
from service.adk_fixes import OrchestratorFixes, OrchestratorProposals
from service.adk_lease import LeaseTaken, WriteLease
from service.leader import LeaderElector
from tests.test_approvals_lab import propose
from tests.test_orchestrator_lab import MISSING, amos_events, create, image_of, read, set_image, wait_pods
from tests.test_orchestrator_lab import build as build_amos

pytestmark = pytest.mark.lab

SERVICE = "amos-5f7c9-replica"


def broken_web(api_client: client.ApiClient, namespace: str) -> ObjectRef:
    """A Deployment healthy on revision 1 that pulls a missing image on revision 2."""
    create(api_client, namespace, deployment("web", "nginx:1.27", replicas=2))
    set_image(api_client, namespace, "web", MISSING)
    wait_pods(api_client, namespace, "web", {"ErrImagePull", "ImagePullBackOff"})
    return ObjectRef(kind="Deployment", namespace=namespace, name="web")


def elector(api: client.ApiClient, settings: Settings, identity: str) -> LeaderElector:
    """An elector on the Lease the service elects its leader on, with a lease long enough to outlast the test."""
    return LeaderElector(api, settings.store_namespace, settings.lease_name, identity, lease_seconds=120)


def holder(api: client.ApiClient, settings: Settings) -> str | None:
    lease = client.CoordinationV1Api(api).read_namespaced_lease(settings.lease_name, settings.store_namespace)
    assert lease.spec is not None
    return lease.spec.holder_identity


def service_leads(api: client.ApiClient, settings: Settings) -> LeaderElector:
    """The in-cluster service, as far as the Lease shows: it holds it, live."""
    StateStore(api, settings).ensure_namespace()
    service = elector(api, settings, SERVICE)
    assert service.step()
    return service


def adk_web(settings: Settings, lab: LabCluster) -> OrchestratorFixes:
    return OrchestratorFixes(settings.model_copy(update={"adk_web_writes": True, "kubeconfig": lab.kubeconfig}))


def test_while_the_service_holds_the_lease_an_adk_web_fix_changes_nothing_and_names_the_service(
    lab: LabCluster, api_client: client.ApiClient, amos_api: client.ApiClient, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    web = broken_web(api_client, settings.namespaces[0])
    service_leads(amos_api, settings)
    before = read(api_client, web.namespace, "web")
    fixes = adk_web(settings, lab)

    try:
        answer = fixes(web, [Rollback(namespace=web.namespace, name="web", to_revision=1)])
    finally:
        fixes.close()

    assert answer.startswith("refused: ") and f"the AMOS service {SERVICE} holds the lease" in answer, answer
    assert "python main.py approve" in answer and "nothing was applied" in answer
    after = read(api_client, web.namespace, "web")
    assert after["spec"] == before["spec"] and image_of(api_client, web.namespace, "web") == MISSING
    store = StateStore(api_client, settings)
    assert store.ledger(fingerprint(web, FaultKind.REQUESTED)).history == []
    assert SnapshotStore(api_client, settings, store.signer).list() == [] and store.journals() == []
    assert "FixApplied" not in amos_events(api_client, web.namespace, "web")
    assert holder(api_client, settings) == SERVICE


def test_while_the_service_holds_the_lease_an_adk_web_approval_is_only_annotated_and_the_service_applies_it(
    lab: LabCluster, api_client: client.ApiClient, amos_api: client.ApiClient, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    namespace = settings.namespaces[0]
    client.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": {"amos.io/mode": "approve"}}})
    web = broken_web(api_client, namespace)
    service = build_amos(settings, amos_api, Mailer(settings), fault_present=lambda ref: ref == web)
    service.store.ensure_namespace()
    proposal_id = propose(service, namespace)
    service_leads(amos_api, settings)
    fixes = adk_web(settings, lab)

    try:
        answer = OrchestratorProposals(fixes).decide(proposal_id, namespace, approve=True)
    finally:
        fixes.close()

    assert answer.startswith(f"approved {proposal_id} on {web} as "), answer
    assert f"the AMOS service {SERVICE} holds the lease" in answer and "at its next check" in answer, answer
    annotations = read(api_client, namespace, "web")["metadata"].get("annotations") or {}
    assert annotations.get(APPROVE_ANNOTATION) == proposal_id
    assert image_of(api_client, namespace, "web") == MISSING
    stored = service.approvals.proposals.get(proposal_id)
    assert stored is not None and stored.state is ProposalState.PENDING
    assert "ProposalApproved" not in amos_events(api_client, namespace, "web")
    reports = service.check_approvals()  # the service's next check applies it
    assert [r.outcome for r in reports] == [Outcome.FIXED], [r.escalation_reason for r in reports]
    assert (reports[0].approved_by or "").startswith("amos-approve/")


def test_with_no_holder_adk_web_takes_the_lease_for_its_fix_and_gives_it_up_afterwards(
    lab: LabCluster,
    api_client: client.ApiClient,
    make_settings: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = make_settings()
    web = broken_web(api_client, settings.namespaces[0])
    fixes = adk_web(settings, lab)
    handler = fixes.orchestrator().handler
    held_during_the_fix: list[str | None] = []

    def process(*args: Any, **kwargs: Any) -> Any:
        held_during_the_fix.append(holder(api_client, settings))
        return original(*args, **kwargs)

    original = handler.process
    monkeypatch.setattr(handler, "process", process)
    try:
        answer = fixes(web, [Rollback(namespace=web.namespace, name="web", to_revision=1)])
    finally:
        fixes.close()

    assert answer.startswith(f"fixed: {web}"), answer
    assert image_of(api_client, web.namespace, "web") == "nginx:1.27"
    (during,) = held_during_the_fix
    assert during is not None and during.startswith("adk-web/") and during == fixes.orchestrator().identity
    assert holder(api_client, settings) is None  # given up
    assert not fixes.orchestrator().steps.still_leader()  # outside a write, adk web's writes are fenced
    assert elector(api_client, settings, SERVICE).step()  # the service takes over at once


def test_the_lease_is_held_while_any_write_runs_and_refused_while_the_service_holds_it(
    api_client: client.ApiClient, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    StateStore(api_client, settings).ensure_namespace()
    lease = WriteLease(elector(api_client, settings, "adk-web/alice@laptop-1"))
    service = elector(api_client, settings, SERVICE)

    with lease.holding():
        with lease.holding():  # a second session's write, at the same time
            assert not service.step()
        assert holder(api_client, settings) == "adk-web/alice@laptop-1" and lease.still_leads()  # one still runs
        assert not service.step()

    assert holder(api_client, settings) is None and not lease.still_leads()
    assert service.step()
    with pytest.raises(LeaseTaken) as taken, lease.holding():
        pytest.fail("a write ran while the service held the lease")
    assert taken.value.holder == SERVICE and not lease.still_leads()
