"""The agents' instructions, rendered from `prompts/*.j2` with StrictUndefined.

Instructions are InstructionProviders (callables), which also means ADK does not
substitute `{name}` in them: log lines full of braces stay as they are. Text from the
cluster or a model is wrapped in <untrusted> blocks, and every such field, in a block or
not, passes the `untrusted` filter, which keeps it from closing the block or forging the
machine-readable markers.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from google.adk.agents.readonly_context import ReadonlyContext
from google.genai import types
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from agents.context import IncidentContext
from agents.guardrails import approved_actions, session_diagnosis
from core.actions import Category
from core.config import Settings

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
CONTEXT_KEY = "incident_context"  # session state: IncidentContext as JSON
CATEGORIES = tuple(category.value for category in Category)
INCIDENT_BEGIN, INCIDENT_END = "BEGIN_AMOS_INCIDENT", "END_AMOS_INCIDENT"
ACTIONS_BEGIN, ACTIONS_END = "BEGIN_AMOS_ACTIONS", "END_AMOS_ACTIONS"


# Characters a reader does not see but a parser or a model may: format characters (zero-width
# space and joiners, bidi controls, tags), variation selectors, fillers that render as blanks.
_INVISIBLE_EXTRA = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u3164\uffa0")
_LINE_SEPARATORS = frozenset("\u2028\u2029\x85\x0b\x0c")
_TAG_OPENERS = re.compile("[<\uff1c\ufe64\u2329\u3008\u27e8]")  # `<` and the brackets that look like it
_MARKER = re.compile(
    "|".join(re.escape(marker) for marker in (INCIDENT_BEGIN, INCIDENT_END, ACTIONS_BEGIN, ACTIONS_END)), re.IGNORECASE
)
_MARKER_WORD = re.compile("_amos_", re.IGNORECASE)


def _visible(char: str) -> str:
    if char in "\n\t":
        return char
    if char in _LINE_SEPARATORS:
        return "\n"
    category = unicodedata.category(char)
    if category in {"Cc", "Cf", "Cs", "Co", "Cn"} or char in _INVISIBLE_EXTRA:
        return ""
    if category == "Mn" and ("\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef"):
        return ""  # variation selectors
    return char


def untrusted(value: Any, inline: bool = False) -> str:
    """Neutralise what could end an <untrusted> block or forge a marker line, however it is spelled.

    Invisible characters are dropped first (so `</untr\u200busted>` is seen as what it is),
    every `<` is written `&lt;` (no case or spelling of a closing tag survives), and the
    machine-readable markers lose their exact spelling in any case. `inline` also folds lines,
    for a field printed outside a block.
    """
    text = "".join(_visible(char) for char in str(value))
    text = _TAG_OPENERS.sub("&lt;", text)
    text = _MARKER.sub(lambda match: _MARKER_WORD.sub("_amos_", match[0]), text)
    return " ".join(text.split()) if inline else text


def block_json(value: Any) -> str:
    """JSON for a machine-readable block: the same data, but no `<`, marker or invisible character in its text.

    The block sits outside any <untrusted> fence, so the strings in it (from the cluster or a
    model) are written with JSON escapes a parser decodes back to the same value.
    """
    text = json.dumps(value, sort_keys=True)  # ensure_ascii: every non-ASCII character is a \u escape
    text = text.replace("<", "\\u003c")
    return _MARKER_WORD.sub(lambda match: "\\u005f" + match[0][1:-1] + "\\u005f", text)


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
        incident_json=block_json(context.incident.model_dump(mode="json")) if context else "",
        max_memory_factor=f"{settings.max_memory_factor:g}",
        max_memory_factor_text=f"a factor of {factor:g}",
        max_replicas=settings.max_replicas,
        categories=CATEGORIES,
    )


def render_remediation(state: Any) -> str:
    diagnosis = session_diagnosis(state)
    actions = approved_actions(diagnosis)
    calls = [{"tool": action.tool_name, "args": action.tool_args()} for action in actions]
    return render(
        "remediation.j2",
        diagnosis=diagnosis,
        actions=actions,
        actions_json="\n".join(block_json(call) for call in calls),
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
