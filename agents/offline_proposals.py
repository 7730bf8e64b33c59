"""The offline model in `adk web`: the same rules, and requests about proposals answered with the proposal tools.

When the coordinator is offered `list_proposals` and the user's latest message asks about proposals,
the rules list them (and, asked to approve or reject an id, call that tool when it is offered), then
answer with what the tools said, instead of diagnosing. Any other request goes to the usual rules.
"""

from __future__ import annotations

import re
from typing import Any

from google.adk.models.llm_request import LlmRequest
from google.genai import types

from agents.guardrails import DIAGNOSIS
from agents.offline import Exchange, OfflineLlm, exchanges, user_texts
from agents.web_proposals import APPROVE_PROPOSAL, LIST_PROPOSALS, PROPOSAL_ID, REJECT_PROPOSAL

_DECISION = re.compile(r"\b(approve|reject)\b", re.IGNORECASE)
_ABOUT_PROPOSALS = re.compile(r"\bproposals?\b", re.IGNORECASE)


def _answered(found: list[Exchange], tool: str) -> Exchange | None:
    return next((exchange for exchange in reversed(found) if exchange.name == tool and exchange.answered), None)


def _call(tool: str, /, **args: Any) -> list[types.Part]:
    return [types.Part.from_function_call(name=tool, args=args)]


def _text(text: str) -> list[types.Part]:
    return [types.Part.from_text(text=text)]


def _listing(response: Any) -> list[str]:
    data = response.get("data") if isinstance(response, dict) else None
    if not isinstance(response, dict) or not response.get("ok") or not isinstance(data, dict):
        error = response.get("error") if isinstance(response, dict) else response
        return [f"The proposals could not be listed: {str(error)[:300]}"]
    proposals = data.get("proposals") or []
    if not proposals:
        return [f"No proposal waits for approval in namespace {data.get('namespace')}."]
    lines = [f"{len(proposals)} proposal(s) wait for approval in namespace {data.get('namespace')}:"]
    for item in proposals:
        changes = "; ".join(item.get("changes") or [])
        lines.append(f"- {item.get('id')}  {item.get('workload')}  {item.get('age_minutes')}m old  {changes}")
        lines.extend("    " + diff.replace("\n", "\n    ") for diff in item.get("diffs") or [])
    return lines


def _decided(response: Any) -> str:
    if isinstance(response, dict) and response.get("ok"):
        return str((response.get("data") or {}).get("result"))
    return str(response.get("error") if isinstance(response, dict) else response)


def proposal_turn(llm_request: LlmRequest) -> list[types.Part] | None:
    """The coordinator's next turn for a request about proposals; None for any other request."""
    tools = set(llm_request.tools_dict)
    request = (user_texts(llm_request) or [""])[-1]
    if LIST_PROPOSALS not in tools or not _ABOUT_PROPOSALS.search(request):
        return None
    found = exchanges(llm_request)
    asked, named = _DECISION.search(request), PROPOSAL_ID.search(request)
    decision_tool = None
    if asked and named:
        decision_tool = APPROVE_PROPOSAL if asked.group(1).lower() == "approve" else REJECT_PROPOSAL
        if decision_tool in tools:
            decided = _answered(found, decision_tool)
            if decided is None:
                return _call(decision_tool, proposal_id=named.group(0))
            return _text(f"{decision_tool.split('_')[0].capitalize()}: {_decided(decided.response)}")
    listed = _answered(found, LIST_PROPOSALS)
    if listed is None:
        return _call(LIST_PROPOSALS)
    lines = _listing(listed.response)
    if decision_tool is not None:
        lines.append(
            "Deciding on a proposal is not possible in this session (adk web is diagnose-only here): run "
            f"`python main.py {decision_tool.split('_')[0]} {named.group(0) if named else '<id>'}` yourself."
        )
    return _text("\n".join(lines))


class ProposalRulesLlm(OfflineLlm):
    """`OfflineLlm` whose coordinator also answers requests about proposals (only `adk web` offers those tools)."""

    def next_turn(self, llm_request: LlmRequest) -> list[types.Part]:
        if DIAGNOSIS in llm_request.tools_dict:
            turn = proposal_turn(llm_request)
            if turn is not None:
                return turn
        return super().next_turn(llm_request)
