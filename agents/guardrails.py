"""Budgets and hard rules around every model and tool call of one agent run.

Installed as agent callbacks (not a Runner plugin) so `adk web` runs the very same
checks. Counts are kept per invocation: model calls, tool calls, tokens. When a
budget runs out the run is wound down, not crashed: the model is no longer called and
each agent gets a final answer saying why (the diagnosis agent an escalating
`Diagnosis`). A mutating call, parsed into its typed action, must equal an action of the
session's diagnosis, each at most once; anything else is refused and recorded like a
policy refusal.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import MutableSequence
from dataclasses import dataclass, field
from typing import Any

from google.adk.agents.callback_context import CallbackContext
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.tools.base_tool import BaseTool
from google.adk.tools.tool_context import ToolContext
from google.genai import types
from pydantic import ValidationError

from core.actions import TOOL_ACTIONS, Category, Diagnosis, ProposedAction, described_call, parse_call
from core.config import Settings
from core.report import ActionRecord, ActionStatus
from tools.results import ToolResult, ToolStatus

COORDINATOR = "coordinator"
DIAGNOSIS = "diagnosis"
REMEDIATION = "remediation"
DIAGNOSIS_KEY = "diagnosis"  # session state key the diagnosis agent writes (output_key)
SET_MODEL_RESPONSE = "set_model_response"

_MAX_RUNS_KEPT = 64
_FENCE = re.compile(r"^\s*```(?:json)?\s*(?P<body>.*?)\s*```\s*$", re.DOTALL)


@dataclass
class RunStats:
    """What one invocation used, and why it was cut short, if it was."""

    model_calls: int = 0
    tool_calls: int = 0
    tokens: int = 0
    stop_reason: str | None = None
    diagnosis_error: str | None = None
    applied_actions: list[ProposedAction] = field(default_factory=list)  # write calls already let through


def parse_diagnosis(text: str) -> Diagnosis:
    """A `Diagnosis` from model text, tolerating a ```json fence; raises ValueError with a short reason."""
    match = _FENCE.match(text)
    body = match.group("body") if match else text.strip()
    if not body.startswith("{"):
        start, end = body.find("{"), body.rfind("}")
        if start < 0 or end <= start:
            raise ValueError("the answer holds no JSON object")
        body = body[start : end + 1]
    try:
        return Diagnosis.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "answer"
        raise ValueError(f"{where}: {first['msg']}") from error


def escalating_diagnosis(reason: str) -> Diagnosis:
    return Diagnosis(
        root_cause="No trustworthy diagnosis: " + reason,
        category=Category.UNKNOWN,
        confidence=0.0,
        escalate=True,
        escalation_reason=reason,
        human_steps=["Investigate the incident by hand; AMOS changed nothing in this session."],
    )


def session_diagnosis(state: Any) -> Diagnosis | None:
    raw = state.get(DIAGNOSIS_KEY) if state is not None else None
    if raw is None:
        return None
    try:
        if isinstance(raw, str):
            return parse_diagnosis(raw)
        return Diagnosis.model_validate(raw)
    except (ValueError, ValidationError):
        return None


def approved_actions(diagnosis: Diagnosis | None) -> list[ProposedAction]:
    """What remediation may apply: the diagnosis's proposals, unless it escalates."""
    if diagnosis is None or diagnosis.escalate:
        return []
    return list(diagnosis.proposed_actions)


def _refused(text: str) -> dict[str, Any]:
    return ToolResult.failure(text, ToolStatus.REFUSED).model_dump()


def _text_response(text: str) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=[types.Part.from_text(text=text)]), turn_complete=True)


class Guardrails:
    """Callbacks for every agent of one graph; one instance per graph."""

    def __init__(self, settings: Settings, *, recorder: MutableSequence[ActionRecord] | None = None) -> None:
        self.settings = settings
        self.recorder = recorder
        self._runs: OrderedDict[str, RunStats] = OrderedDict()

    # --- bookkeeping ---------------------------------------------------------------------------

    def stats(self, invocation_id: str) -> RunStats:
        run = self._runs.get(invocation_id)
        if run is None:
            run = self._runs[invocation_id] = RunStats()
            while len(self._runs) > _MAX_RUNS_KEPT:
                self._runs.popitem(last=False)
        return run

    def last_run(self) -> RunStats:
        """The stats of the latest invocation (a session run by `run_session` has exactly one)."""
        if not self._runs:
            return RunStats()
        return next(reversed(self._runs.values()))

    def _stop(self, run: RunStats, reason: str) -> None:
        if run.stop_reason is None:
            run.stop_reason = reason

    def _record_refusal(self, tool_name: str, args: dict[str, Any], reason: str) -> str:
        """Record a refused write call like the policy guard records its refusals; returns its summary."""
        verb, target, summary = described_call(tool_name, args)
        if self.recorder is not None:
            self.recorder.append(
                ActionRecord(verb=verb, target=target, summary=summary, status=ActionStatus.REFUSED, reason=reason)
            )
        return summary

    # --- model callbacks -----------------------------------------------------------------------

    def before_model(self, callback_context: CallbackContext, llm_request: LlmRequest) -> LlmResponse | None:
        run = self.stats(callback_context.invocation_id)
        if run.stop_reason is None:
            if run.model_calls >= self.settings.max_model_calls:
                self._stop(run, f"the model-call budget ({self.settings.max_model_calls} calls) ran out")
            elif run.tokens >= self.settings.session_token_budget:
                self._stop(run, f"the token budget ({self.settings.session_token_budget} tokens) ran out")
        if run.stop_reason is not None:
            return self._wind_down(callback_context.agent_name, run.stop_reason)
        run.model_calls += 1
        return None

    def _wind_down(self, agent_name: str, reason: str) -> LlmResponse:
        if agent_name == DIAGNOSIS:
            return _text_response(escalating_diagnosis(f"the session stopped: {reason}").model_dump_json())
        return _text_response(f"Stopping: {reason}. Nothing more will be done in this session.")

    def after_model(self, callback_context: CallbackContext, llm_response: LlmResponse) -> LlmResponse | None:
        run = self.stats(callback_context.invocation_id)
        usage = llm_response.usage_metadata
        if usage is not None:
            run.tokens += usage.total_token_count or (
                (usage.prompt_token_count or 0) + (usage.candidates_token_count or 0)
            )
        if callback_context.agent_name != DIAGNOSIS or llm_response.partial:
            return None
        content = llm_response.content
        if content is None or not content.parts or any(part.function_call for part in content.parts):
            return None
        text = "".join(part.text or "" for part in content.parts if not part.thought)
        if not text.strip():
            return None
        # A final answer in text: make it a valid Diagnosis or an escalation, never a crash.
        try:
            diagnosis = parse_diagnosis(text)
        except ValueError as error:
            run.diagnosis_error = f"the model's diagnosis is not valid ({error})"
            diagnosis = escalating_diagnosis(run.diagnosis_error)
        return _text_response(diagnosis.model_dump_json())

    # --- tool callbacks ------------------------------------------------------------------------

    def before_tool(self, tool: BaseTool, args: dict[str, Any], tool_context: ToolContext) -> dict[str, Any] | None:
        run = self.stats(tool_context.invocation_id)
        if tool.name == SET_MODEL_RESPONSE:
            return None  # the final answer, not a tool use
        if run.stop_reason is None and run.tool_calls >= self.settings.max_tool_calls:
            self._stop(run, f"the tool-call budget ({self.settings.max_tool_calls} calls) ran out")
        if run.stop_reason is not None:
            return _refused(f"refused: {run.stop_reason}; give your final answer now")
        run.tool_calls += 1
        if tool.name == REMEDIATION:
            if not approved_actions(session_diagnosis(tool_context.state)):
                return _refused("refused: there is no approved action to apply (no diagnosis, or it escalates)")
            return None
        if tool.name in TOOL_ACTIONS:
            return self._check_write(tool.name, args, tool_context, run)
        return None

    def _check_write(
        self, tool_name: str, args: dict[str, Any], tool_context: ToolContext, run: RunStats
    ) -> dict[str, Any] | None:
        """Let a write through when it is, as a typed action, one the diagnosis proposed and not yet attempted."""
        try:
            action: ProposedAction | None = parse_call(tool_name, args)
        except ValidationError:
            action = None  # not even a valid action: certainly not a proposed one
        if action is None or action not in approved_actions(session_diagnosis(tool_context.state)):
            reason = "not among the actions the diagnosis proposed; remediation applies only those"
        elif action in run.applied_actions:
            reason = "already attempted in this session; an action is applied at most once"
        else:
            run.applied_actions.append(action)
            return None
        summary = self._record_refusal(tool_name, args, reason)
        return _refused(f"refused: {summary}: {reason}")

    def after_tool(
        self, tool: BaseTool, args: dict[str, Any], tool_context: ToolContext, tool_response: Any
    ) -> dict[str, Any] | None:
        if tool.name == SET_MODEL_RESPONSE and isinstance(tool_response, dict) and "error" in tool_response:
            self.stats(
                tool_context.invocation_id
            ).diagnosis_error = f"the model's diagnosis is not valid ({str(tool_response['error'])[:300]})"
        elif tool.name == DIAGNOSIS and isinstance(tool_response, dict | str):
            text = tool_response.get("result") if isinstance(tool_response, dict) else tool_response
            if isinstance(text, str) and text.startswith("Error"):
                run = self.stats(tool_context.invocation_id)
                run.diagnosis_error = run.diagnosis_error or f"the diagnosis agent failed ({text[:300]})"
        return None

    def on_tool_error(
        self, tool: BaseTool, args: dict[str, Any], tool_context: ToolContext, error: Exception
    ) -> dict[str, Any]:
        """A raising tool becomes an error result the model can read, instead of aborting the run."""
        return ToolResult.failure(f"tool {tool.name} failed: {type(error).__name__}: {str(error)[:400]}").model_dump()
