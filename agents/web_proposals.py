"""The proposal tools of `adk web`: what waits for a person's approval and, where writes are enabled, the decision.

`list_proposals` shows the pending proposals for workloads in the session's namespace (the scope the
reads have): id, workload, age, the change and its diff, redacted, and passed through the prompt
boundary's filter (ids and diffs are untrusted text, like everything read from the cluster).
`approve_proposal` and `reject_proposal` exist only with writes enabled; they take the path
`python main.py approve` takes (the annotation written as the caller; AMOS re-validates and applies
through its attempt steps). A decision is taken only on an id the user wrote in the session, so a
model cannot approve on its own, nor because text in a tool result told it to.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from google.adk.agents.callback_context import CallbackContext
from google.adk.tools.tool_context import ToolContext
from pydantic import BaseModel

from agents.instructions import untrusted
from core.clock import Clock, utc_now
from core.models import ObjectRef
from core.redaction import Redactor

LIST_PROPOSALS = "list_proposals"
APPROVE_PROPOSAL = "approve_proposal"
REJECT_PROPOSAL = "reject_proposal"
PROPOSAL_ID = re.compile(r"\bp-[0-9a-f]{10}\b")
MAX_LISTED = 20
MAX_DIFF_CHARS = 2000

Scope = Callable[[CallbackContext], tuple[Any, str | None]]  # `WebTools.scope`: (IncidentScope, why not)


class PendingProposal(BaseModel):
    """A proposal as the orchestrator's store holds it, before it is redacted and filtered for a model."""

    id: str
    workload: ObjectRef
    created_at: datetime
    expires_at: datetime
    changes: list[str]
    diffs: list[str]


class ProposalDesk(Protocol):
    """The orchestrator's side: the proposals waiting in one namespace, and a person's decision on one."""

    def pending(self, namespace: str) -> list[PendingProposal]: ...

    def decide(self, proposal_id: str, namespace: str, *, approve: bool) -> str: ...


def _result(data: Any = None, error: str | None = None, truncated: bool = False) -> dict[str, Any]:
    return {"ok": error is None, "data": data, "error": error, "truncated": truncated}


def user_text(context: CallbackContext) -> str:
    """Everything the user wrote in the session (not the model, not a tool)."""
    return "\n".join(
        part.text or ""
        for event in context.session.events
        if event.author == "user" and event.content
        for part in event.content.parts or []
    )


class ProposalTools:
    """The tools, each call scoped to the session's namespace; decisions only when `decide` was asked for."""

    def __init__(
        self, desk: ProposalDesk, scope: Scope, redactor: Callable[[str], Redactor], clock: Clock = utc_now
    ) -> None:
        self.desk = desk
        self.scope = scope
        self.redactor = redactor
        self.clock = clock

    def functions(self, *, decide: bool) -> list[Callable[..., Any]]:
        listing: list[Callable[..., Any]] = [self.list_proposals]
        return listing + [self.approve_proposal, self.reject_proposal] if decide else listing

    def _shown(self, proposal: PendingProposal, redactor: Redactor, now: datetime) -> dict[str, Any]:
        def inline(text: str) -> str:
            return untrusted(redactor.redact_text(text), inline=True)

        return {
            "id": inline(proposal.id),
            "workload": inline(str(proposal.workload)),
            "age_minutes": int((now - proposal.created_at).total_seconds() // 60),
            "expires_at": f"{proposal.expires_at:%Y-%m-%d %H:%M} UTC",
            "changes": [inline(change) for change in proposal.changes],
            "diffs": [untrusted(redactor.redact_then_clip(diff, MAX_DIFF_CHARS)) for diff in proposal.diffs],
        }

    def list_proposals(self, tool_context: ToolContext) -> dict[str, Any]:
        """The proposals waiting for a person's approval in the incident's namespace (approve mode).

        Returns:
            {ok, data: {namespace, proposals: [{id, workload, age_minutes, expires_at, changes, diffs}]}, error}.
        """
        scope, error = self.scope(tool_context)
        if scope is None:
            return _result(error=error or "refused: no incident scope")
        try:
            pending = self.desk.pending(scope.namespace)
        except Exception as failure:  # noqa: BLE001 - a tool answers with the reason, it never raises
            return _result(error=f"cannot read the proposals: {type(failure).__name__}: {str(failure)[:300]}")
        redactor, now = self.redactor(scope.namespace), self.clock()
        shown = [self._shown(proposal, redactor, now) for proposal in pending[:MAX_LISTED]]
        return _result({"namespace": scope.namespace, "proposals": shown}, truncated=len(pending) > MAX_LISTED)

    async def approve_proposal(self, proposal_id: str, tool_context: ToolContext) -> dict[str, Any]:
        """Approve a pending proposal the user named by its id: AMOS checks it again and applies it safely.

        Only when the user explicitly asked to approve this proposal id in this session.

        Args:
            proposal_id: the proposal's id, as the user wrote it (p- and 10 hex digits).

        Returns:
            {ok, data: {result}, error}: what AMOS did (applied and verified, or why not).
        """
        return await self._decide(proposal_id, tool_context, approve=True)

    async def reject_proposal(self, proposal_id: str, tool_context: ToolContext) -> dict[str, Any]:
        """Reject a pending proposal the user named by its id: nothing is changed, and AMOS reports it.

        Only when the user explicitly asked to reject this proposal id in this session.

        Args:
            proposal_id: the proposal's id, as the user wrote it (p- and 10 hex digits).

        Returns:
            {ok, data: {result}, error}.
        """
        return await self._decide(proposal_id, tool_context, approve=False)

    async def _decide(self, proposal_id: str, tool_context: ToolContext, *, approve: bool) -> dict[str, Any]:
        scope, error = self.scope(tool_context)
        if scope is None:
            return _result(error=error or "refused: no incident scope")
        shown_id = untrusted(proposal_id, inline=True)[:64]
        if not PROPOSAL_ID.fullmatch(proposal_id):
            return _result(error=f"refused: {shown_id!r} is not a proposal id (p- and 10 hex digits)")
        if proposal_id not in PROPOSAL_ID.findall(user_text(tool_context)):
            return _result(error=f"refused: {proposal_id} is decided only when the user names it in this session")
        # The decision applies and verifies the fix (minutes): off the event loop that serves every session.
        try:
            text = await asyncio.to_thread(self.desk.decide, proposal_id, scope.namespace, approve=approve)
        except Exception as failure:  # noqa: BLE001 - a tool answers with the reason, it never raises
            return _result(error=f"the decision failed: {type(failure).__name__}: {str(failure)[:300]}")
        shown = untrusted(self.redactor(scope.namespace).redact_text(text), inline=True)
        if shown.startswith("refused"):
            return _result(error=shown)
        return _result({"result": shown})
