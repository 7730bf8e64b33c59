"""Run the agent graph on one incident, within hard budgets, and say what came of it.

`run_session` never raises: a model that answers garbage, loops, runs out of budget
or times out ends the session as `outcome_hint="escalate"` with a reason a person can
act on. Whether anything was changed is read from the write tools' action records,
not from what the model says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from google.adk.agents import RunConfig
from google.adk.agents.invocation_context import LlmCallsLimitExceededError
from google.adk.models import BaseLlm
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types
from pydantic import BaseModel, Field

from agents.context import IncidentContext
from agents.graph import REMEDIATION_REPORT_KEY, build_graph
from agents.guardrails import COORDINATOR, Guardrails, session_diagnosis
from agents.instructions import CONTEXT_KEY
from agents.models import build_model, model_label
from core.actions import Diagnosis
from core.config import Settings
from core.models import Incident
from core.report import ActionRecord, ActionStatus

log = logging.getLogger(__name__)

APP_NAME = "amos"
USER_ID = "amos"

OutcomeHint = Literal["remediated", "escalate", "recommend"]


class ToolSet(Protocol):
    def as_functions(self) -> Sequence[Any]: ...


class SessionResult(BaseModel):
    """What one agent session decided and did."""

    diagnosis: Diagnosis | None = None
    actions: list[ActionRecord] = Field(default_factory=list)
    outcome_hint: OutcomeHint
    escalation_reason: str | None = None
    model: str = ""
    model_calls: int = 0
    tool_calls: int = 0
    tokens: int = 0
    summary: str = ""  # the coordinator's closing words (model text: display only, never decisive)
    stop_reason: str | None = None  # a budget, the timeout or an error that cut the session short
    duration_seconds: float = 0.0


def _first_message(incident: Incident) -> types.Content:
    text = f"Incident {incident.id}: {incident.title}. Diagnose it and, if it is safe, remediate it."
    return types.Content(role="user", parts=[types.Part.from_text(text=text)])


async def run_session(
    incident: Incident,
    context: IncidentContext,
    read_tools: ToolSet,
    write_tools: ToolSet | None,
    settings: Settings,
    model: BaseLlm | None = None,
) -> SessionResult:
    """Diagnose (and unless `settings.dry_run`, remediate) one incident with the agent graph."""
    started = time.monotonic()
    recorder = getattr(write_tools, "recorder", None)
    if recorder is None:
        recorder = []
    try:
        model = model or build_model(settings)
    except Exception as error:  # noqa: BLE001 - a configuration problem: a human must look
        return SessionResult(
            outcome_hint="escalate",
            escalation_reason=f"no model available: {error}",
            stop_reason=str(error),
            duration_seconds=time.monotonic() - started,
        )
    remediate = write_tools is not None and not settings.dry_run
    guardrails = Guardrails(settings, recorder=recorder)
    off_reason = "dry-run mode: AMOS only recommends" if settings.dry_run else "no write access in this session"
    root = build_graph(
        model=model,
        settings=settings,
        read_tools=read_tools.as_functions(),
        write_tools=write_tools.as_functions() if remediate and write_tools is not None else None,
        guardrails=guardrails,
        remediation_off_reason=off_reason,
    )
    sessions = InMemorySessionService()
    runner = Runner(app_name=APP_NAME, agent=root, session_service=sessions)
    session = await sessions.create_session(
        app_name=APP_NAME, user_id=USER_ID, state={CONTEXT_KEY: context.model_dump(mode="json")}
    )
    summary_parts: list[str] = []
    stop_reason: str | None = None

    async def drive() -> None:
        run_config = RunConfig(max_llm_calls=settings.max_model_calls)
        events = runner.run_async(
            user_id=USER_ID, session_id=session.id, new_message=_first_message(incident), run_config=run_config
        )
        async with contextlib.aclosing(events) as stream:
            async for event in stream:
                if event.author == COORDINATOR and event.is_final_response() and event.content:
                    text = "".join(part.text or "" for part in event.content.parts or [] if not part.thought)
                    if text.strip():
                        summary_parts.append(text.strip())

    try:
        await asyncio.wait_for(drive(), timeout=settings.session_timeout_seconds)
    except TimeoutError:
        stop_reason = f"the session timed out after {settings.session_timeout_seconds:g} s"
    except LlmCallsLimitExceededError:
        stop_reason = f"the model-call budget ({settings.max_model_calls} calls) ran out"
    except Exception as error:  # the agent run itself failed: escalate, never crash the service
        log.warning("agent session for incident %s failed", incident.id, exc_info=True)
        stop_reason = f"the agent run failed: {type(error).__name__}: {str(error)[:300]}"
    finally:
        with contextlib.suppress(Exception):
            await runner.close()

    final = await sessions.get_session(app_name=APP_NAME, user_id=USER_ID, session_id=session.id)
    state = final.state if final is not None else {}
    stats = guardrails.last_run()
    stop_reason = stop_reason or stats.stop_reason
    diagnosis = session_diagnosis(state)
    records = list(recorder)
    outcome, reason = decide_outcome(
        diagnosis,
        records,
        remediation_ran=REMEDIATION_REPORT_KEY in state,
        remediation_enabled=remediate,
        dry_run=settings.dry_run,
        stop_reason=stop_reason,
        diagnosis_error=stats.diagnosis_error,
    )
    return SessionResult(
        diagnosis=diagnosis,
        actions=records,
        outcome_hint=outcome,
        escalation_reason=reason,
        model=model_label(model),
        model_calls=stats.model_calls,
        tool_calls=stats.tool_calls,
        tokens=stats.tokens,
        summary="\n".join(summary_parts)[-2000:],
        stop_reason=stop_reason,
        duration_seconds=time.monotonic() - started,
    )


def decide_outcome(
    diagnosis: Diagnosis | None,
    records: list[ActionRecord],
    *,
    remediation_ran: bool,
    remediation_enabled: bool,
    dry_run: bool,
    stop_reason: str | None,
    diagnosis_error: str | None,
) -> tuple[OutcomeHint, str | None]:
    """The session's outcome from facts (records, the validated diagnosis), not from model prose."""
    if any(record.status is ActionStatus.APPLIED for record in records):
        return "remediated", None  # verification decides whether it worked
    if diagnosis is None:
        why = diagnosis_error or stop_reason or "the model gave no diagnosis"
        return "escalate", f"no valid diagnosis: {why}"
    if diagnosis.escalate:
        return "escalate", diagnosis.escalation_reason or f"the diagnosis escalates: {diagnosis.root_cause}"
    if not diagnosis.proposed_actions:
        return "escalate", f"the diagnosis proposes no action: {diagnosis.root_cause}"
    if dry_run or not remediation_enabled:
        return "recommend", None
    attempted = [record for record in records if record.status is not ActionStatus.APPLIED]
    if attempted:
        details = "; ".join(f"{r.summary}: {r.status.value} ({r.reason})" for r in attempted[:5])
        return "escalate", f"no proposed action was applied: {details}"
    if stop_reason:
        return "escalate", f"remediation did not complete: {stop_reason}"
    if not remediation_ran:
        return "escalate", "the coordinator did not run remediation for the proposed actions"
    return "escalate", "remediation ran but applied nothing"
