"""`python main.py proposals | approve <id> | reject <id>`: a person's side of approve mode.

Approving is annotating the workload as yourself (`service.approving`, the path `adk web` takes too),
so the API server's RBAC decides who may and the annotation's field manager names you. AMOS applies
it on its next check, through the whole safety loop.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from kubernetes import client

from core.config import Settings
from orchestrator.state_api import StoreError
from service.approving import DecisionRefused, annotate_decision, pending_proposals
from service.exitcodes import ExitCode


def list_proposals(settings: Settings, api: client.ApiClient) -> int:
    """One line per pending proposal: id, age, workload, the change; then each diff."""
    now = datetime.now(UTC)
    try:
        pending = pending_proposals(settings, api)
    except StoreError as error:
        print(f"amos: cannot read proposals: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if not pending:
        print("no proposal waits for approval")
        return ExitCode.OK
    for proposal in pending:
        age = int((now - proposal.created_at).total_seconds() // 60)
        changes = "; ".join(action.summary() for action in proposal.actions)
        print(f"{proposal.id}  {age}m old  {proposal.workload}  expires {proposal.expires_at:%H:%M} UTC  {changes}")
        if proposal.held_until is not None:  # approved, but the guard rails held it
            print(f"    {proposal.note}")
        for record in proposal.records:
            if record.diff:
                print("    " + record.diff.replace("\n", "\n    "))
    return ExitCode.OK


def decide(settings: Settings, api: client.ApiClient, proposal_id: str, *, approve: bool) -> int:
    """Annotate the proposal's workload with the decision, as the caller; RBAC may refuse (exit 2)."""
    try:
        decision = annotate_decision(settings, api, proposal_id, approve=approve)
    except DecisionRefused as refused:
        print(f"amos: {refused}", file=sys.stderr)
        return ExitCode.USAGE
    verb = "approved" if decision.approved else "rejected"
    print(f"{verb} {proposal_id} on {decision.workload} as {decision.by}; AMOS acts on it at its next check")
    return ExitCode.OK
