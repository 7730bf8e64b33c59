"""`python main.py proposals | approve <id> | reject <id>`: a person's side of approve mode.

Approving is annotating the workload as yourself, so the API server's RBAC decides who may (the
right to patch that workload) and the annotation's field manager names you: this command asks the
API server who you are (SelfSubjectReview) and writes `amos.io/approve=<id>` with the field manager
`amos-approve/<you>`. AMOS applies it on its next check, through the whole safety loop.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from core.config import Settings
from orchestrator.integrity import StateSigner
from orchestrator.proposals import APPROVE_ANNOTATION, REJECT_ANNOTATION, ProposalState, ProposalStore
from orchestrator.state_api import MANAGED_BY, MANAGED_BY_LABEL, StoreError, call_json
from service.exitcodes import ExitCode

PATCHERS = {
    "Deployment": "patch_namespaced_deployment",
    "StatefulSet": "patch_namespaced_stateful_set",
    "DaemonSet": "patch_namespaced_daemon_set",
}


def _store(settings: Settings, api: client.ApiClient) -> ProposalStore:
    signer = StateSigner(api, settings.store_namespace, {MANAGED_BY_LABEL: MANAGED_BY})
    return ProposalStore(api, settings, signer)


def list_proposals(settings: Settings, api: client.ApiClient) -> int:
    """One line per pending proposal: id, age, workload, the change; then each diff."""
    now = datetime.now(UTC)
    pending = _store(settings, api).list(ProposalState.PENDING)
    if not pending:
        print("no proposal waits for approval")
        return ExitCode.OK
    for proposal in pending:
        age = int((now - proposal.created_at).total_seconds() // 60)
        changes = "; ".join(action.summary() for action in proposal.actions)
        print(f"{proposal.id}  {age}m old  {proposal.workload}  expires {proposal.expires_at:%H:%M} UTC  {changes}")
        for record in proposal.records:
            if record.diff:
                print("    " + record.diff.replace("\n", "\n    "))
    return ExitCode.OK


def _who(api: client.ApiClient) -> str:
    review: dict[str, Any] = call_json(
        "create_self_subject_review",
        client.AuthenticationV1Api(api).create_self_subject_review,
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(((review.get("status") or {}).get("userInfo") or {}).get("username") or "unknown")


def decide(settings: Settings, api: client.ApiClient, proposal_id: str, *, approve: bool) -> int:
    """Annotate the proposal's workload with the decision, as the caller; RBAC may refuse (exit 2)."""
    try:
        proposal = _store(settings, api).get(proposal_id)
    except StoreError as error:
        print(f"amos: cannot read proposals: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if proposal is None:
        print(f"amos: no proposal {proposal_id} in namespace {settings.store_namespace}", file=sys.stderr)
        return ExitCode.USAGE
    if proposal.state is not ProposalState.PENDING:
        print(f"amos: proposal {proposal_id} is already {proposal.state.value}", file=sys.stderr)
        return ExitCode.USAGE
    ref = proposal.workload
    patch_name = PATCHERS.get(ref.kind)
    if patch_name is None:
        print(f"amos: cannot annotate a {ref.kind}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        who = _who(api)
    except StoreError:
        who = "unknown"
    key = APPROVE_ANNOTATION if approve else REJECT_ANNOTATION
    patch = getattr(client.AppsV1Api(api), patch_name)
    try:
        patch(
            ref.name,
            ref.namespace,
            {"metadata": {"annotations": {key: proposal_id}}},
            field_manager=f"amos-approve/{who}"[:128],
        )
    except ApiException as error:
        print(f"amos: the API server refused the annotation on {ref}: {error.status} {error.reason}", file=sys.stderr)
        return ExitCode.USAGE
    verb = "approved" if approve else "rejected"
    print(f"{verb} {proposal_id} on {ref} as {who}; AMOS acts on it at its next check")
    return ExitCode.OK
