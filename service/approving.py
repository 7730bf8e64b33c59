"""A person's decision on a pending proposal, written as that person: the one path `python main.py approve`
and `adk web` share.

Deciding is annotating the proposal's workload (`amos.io/approve=<id>` or `amos.io/reject=<id>`) with the
caller's own credentials, so the API server's RBAC decides who may (the right to patch that workload), and
the field manager `amos-approve/<caller>` names them (the API server says who they are: SelfSubjectReview).
AMOS re-validates and applies on its next check of the proposal (`orchestrator.approvals`).
"""

from __future__ import annotations

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from core.config import Settings
from core.k8s import AMOS_MANAGER, MANAGED_BY_LABEL
from core.models import ObjectRef
from orchestrator.integrity import KEY_SECRET, StateSigner
from orchestrator.proposals import APPROVE_ANNOTATION, REJECT_ANNOTATION, Proposal, ProposalState, ProposalStore
from orchestrator.state_api import StoreError, call_json

PATCHERS = {
    "Deployment": "patch_namespaced_deployment",
    "StatefulSet": "patch_namespaced_stateful_set",
    "DaemonSet": "patch_namespaced_daemon_set",
}
FIELD_MANAGER_PREFIX = "amos-approve/"


class DecisionRefused(Exception):
    """The decision was not written: no such proposal, already decided, out of scope, or the API server refused."""


class Decision(BaseModel):
    """A decision written on a workload: AMOS acts on it at its next check of the proposal."""

    proposal_id: str
    workload: ObjectRef
    approved: bool
    by: str  # the caller, as the API server knows them


def proposal_store(settings: Settings, api: client.ApiClient) -> ProposalStore:
    signer = StateSigner(api, settings.store_namespace, {MANAGED_BY_LABEL: AMOS_MANAGER})
    return ProposalStore(api, settings, signer)


def pending_proposals(settings: Settings, api: client.ApiClient, namespace: str | None = None) -> list[Proposal]:
    """The proposals waiting for a person (for workloads in `namespace`, when given), oldest first.

    Only reads: without the state key no proposal can be genuine, so none is listed (and no key is made).
    """
    try:
        call_json(
            "read_namespaced_secret",
            client.CoreV1Api(api).read_namespaced_secret,
            KEY_SECRET,
            settings.store_namespace,
        )
    except StoreError as error:
        if error.status == 404:
            return []
        raise
    pending = proposal_store(settings, api).list(ProposalState.PENDING)
    return [p for p in pending if namespace is None or p.workload.namespace == namespace]


def caller(api: client.ApiClient) -> str:
    """Who the API server says the credentials of `api` belong to ("unknown" when it cannot say)."""
    try:
        review = call_json(
            "create_self_subject_review",
            client.AuthenticationV1Api(api).create_self_subject_review,
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        )
    except StoreError:
        return "unknown"
    return str((((review or {}).get("status") or {}).get("userInfo") or {}).get("username") or "unknown")


def annotate_decision(
    settings: Settings, api: client.ApiClient, proposal_id: str, *, approve: bool, namespace: str | None = None
) -> Decision:
    """Annotate the workload of pending proposal `proposal_id` with the decision, as the caller of `api`.

    `namespace`: only a proposal for a workload there (a session scoped to it). Raises DecisionRefused.
    """
    try:
        proposal = proposal_store(settings, api).get(proposal_id)
    except StoreError as error:
        raise DecisionRefused(f"cannot read proposals: {error}") from error
    if proposal is None or (namespace is not None and proposal.workload.namespace != namespace):
        where = f"for a workload in namespace {namespace}" if namespace is not None else ""
        raise DecisionRefused(f"no proposal {proposal_id} {where} in namespace {settings.store_namespace}".strip())
    if proposal.state is not ProposalState.PENDING:
        raise DecisionRefused(f"proposal {proposal_id} is already {proposal.state.value}")
    ref = proposal.workload
    patch_name = PATCHERS.get(ref.kind)
    if patch_name is None:
        raise DecisionRefused(f"cannot annotate a {ref.kind}")
    who = caller(api)
    key = APPROVE_ANNOTATION if approve else REJECT_ANNOTATION
    patch = getattr(client.AppsV1Api(api), patch_name)
    try:
        patch(
            ref.name,
            ref.namespace,
            {"metadata": {"annotations": {key: proposal_id}}},
            field_manager=f"{FIELD_MANAGER_PREFIX}{who}"[:128],
        )
    except ApiException as error:
        raise DecisionRefused(
            f"the API server refused the annotation on {ref}: {error.status} {error.reason}"
        ) from error
    return Decision(proposal_id=proposal_id, workload=ref, approved=approve, by=who)
