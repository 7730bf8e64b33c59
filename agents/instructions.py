"""The agents' instructions, rendered from `prompts/*.j2` with StrictUndefined.

Instructions are InstructionProviders (callables), which also means ADK does not
substitute `{name}` in them: log lines full of braces stay as they are. Text from the
cluster is wrapped in <untrusted> blocks; the `untrusted` filter keeps it from closing
the block or forging the machine-readable markers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from google.adk.agents.readonly_context import ReadonlyContext
from google.genai import types
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from agents.context import IncidentContext
from agents.guardrails import ACTION_WRITE_TOOLS, action_to_call, approved_actions, session_diagnosis
from core.config import Settings

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
CONTEXT_KEY = "incident_context"  # session state: IncidentContext as JSON
CATEGORIES = ("bad_image", "bad_command", "bad_env", "oom", "missing_config", "job_failure", "unschedulable", "unknown")
INCIDENT_BEGIN, INCIDENT_END = "BEGIN_AMOS_INCIDENT", "END_AMOS_INCIDENT"
ACTIONS_BEGIN, ACTIONS_END = "BEGIN_AMOS_ACTIONS", "END_AMOS_ACTIONS"
_MARKERS = (INCIDENT_BEGIN, INCIDENT_END, ACTIONS_BEGIN, ACTIONS_END)


def untrusted(value: Any) -> str:
    """Neutralise what could end an <untrusted> block or forge a marker line."""
    text = str(value)
    text = text.replace("</untrusted", "</ untrusted").replace("<untrusted", "< untrusted")
    for marker in _MARKERS:
        text = text.replace(marker, marker.replace("_AMOS_", "_amos_"))
    return text


def _to_yaml(value: Any) -> str:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)
    return str(text).rstrip("\n")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(PROMPTS_DIR),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["untrusted"] = untrusted
    env.filters["to_yaml"] = _to_yaml
    return env


_ENV = _environment()


def render(template: str, **values: Any) -> str:
    """Render `prompts/<template>`; a missing variable raises jinja2.UndefinedError."""
    return str(_ENV.get_template(template).render(**values))


def context_from_state(state: Any) -> IncidentContext | None:
    raw = state.get(CONTEXT_KEY) if state is not None else None
    if raw is None:
        return None
    return IncidentContext.model_validate(raw)


def render_coordinator(
    context: IncidentContext | None, settings: Settings, *, remediation_enabled: bool, off_reason: str = ""
) -> str:
    return render(
        "coordinator.j2",
        incident_title=context.fault if context else None,
        occurrence=context.incident.occurrence if context else 1,
        history=context.history if context else [],
        remediation_enabled=remediation_enabled,
        remediation_off_reason=off_reason,
    )


def render_diagnosis(context: IncidentContext | None, settings: Settings) -> str:
    factor = min(2.0, settings.max_memory_factor)
    return render(
        "diagnosis.j2",
        context=context,
        incident_json=context.incident.model_dump_json() if context else "",
        max_memory_factor=f"{settings.max_memory_factor:g}",
        max_memory_factor_text=f"a factor of {factor:g}",
        max_replicas=settings.max_replicas,
        categories=CATEGORIES,
    )


def render_remediation(state: Any) -> str:
    diagnosis = session_diagnosis(state)
    actions = approved_actions(diagnosis)
    calls = []
    for action in actions:
        try:
            tool, args = action_to_call(action)
        except ValueError:
            continue  # not expressible with the write tools: it cannot be applied
        calls.append({"tool": tool, "args": args})
    return render(
        "remediation.j2",
        diagnosis=diagnosis,
        actions=actions,
        actions_json="\n".join(json.dumps(call, sort_keys=True) for call in calls),
        tool_names=ACTION_WRITE_TOOLS,
    )


InstructionProvider = Callable[[ReadonlyContext], str]


def coordinator_provider(settings: Settings, *, remediation_enabled: bool, off_reason: str = "") -> InstructionProvider:
    def provide(ctx: ReadonlyContext) -> str:
        return render_coordinator(
            context_from_state(ctx.state), settings, remediation_enabled=remediation_enabled, off_reason=off_reason
        )

    return provide


def diagnosis_provider(settings: Settings) -> InstructionProvider:
    def provide(ctx: ReadonlyContext) -> str:
        return render_diagnosis(context_from_state(ctx.state), settings)

    return provide


def remediation_provider() -> InstructionProvider:
    def provide(ctx: ReadonlyContext) -> str:
        return render_remediation(ctx.state)

    return provide


def instruction_text(instruction: Any) -> str:
    """The plain text of a system instruction, whichever shape ADK gave it (str, Content, parts, a list)."""
    if instruction is None:
        return ""
    if isinstance(instruction, str):
        return instruction
    if isinstance(instruction, types.Content):
        return "\n".join(part.text or "" for part in instruction.parts or [])
    if isinstance(instruction, list):
        return "\n".join(instruction_text(item) for item in instruction)
    return str(getattr(instruction, "text", instruction))
