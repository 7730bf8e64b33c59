"""The agent graph: a coordinator that keeps control, with two single-turn specialists.

`diagnosis` (read-only tools, `output_schema=Diagnosis`, `output_key="diagnosis"`) and
`remediation` (write tools) are sub-agents in ADK 2.x `mode="single_turn"`: the
coordinator sees each as a tool, the specialist runs once and its answer comes back as
the tool's result, and control never moves away from the coordinator (no
`transfer_to_agent`). Without write tools (dry-run, or a recommendation-only session)
the remediation agent is not built at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.adk.agents import BaseAgent, LlmAgent
from google.adk.models import BaseLlm

from agents import instructions
from agents.guardrails import COORDINATOR, DIAGNOSIS, DIAGNOSIS_KEY, REMEDIATION, Guardrails
from core.actions import Diagnosis
from core.config import Settings

REMEDIATION_REPORT_KEY = "remediation_report"

DIAGNOSIS_DESCRIPTION = (
    "Diagnoses the incident with read-only Kubernetes tools and returns a Diagnosis: root cause, evidence, "
    "confidence, proposed typed actions, or an escalation. Call it once, with a one-line request."
)
REMEDIATION_DESCRIPTION = (
    "Applies exactly the actions the diagnosis proposed, each through the policy guard, and reports what was "
    "applied or refused. Call it at most once, after a diagnosis that proposes actions and does not escalate."
)


def build_graph(
    *,
    model: BaseLlm,
    settings: Settings,
    read_tools: Sequence[Any],
    write_tools: Sequence[Any] | None,
    guardrails: Guardrails,
    remediation_off_reason: str = "dry-run mode: AMOS only recommends",
    coordinator_tools: Sequence[Any] = (),
) -> LlmAgent:
    """The root (coordinator) agent; `write_tools=None` leaves remediation out of the graph.

    `coordinator_tools`: tools the coordinator calls itself (`adk web`'s proposal tools), beside its specialists.
    """
    callbacks: dict[str, Any] = {
        "before_model_callback": guardrails.before_model,
        "after_model_callback": guardrails.after_model,
        "before_tool_callback": guardrails.before_tool,
        "after_tool_callback": guardrails.after_tool,
        "on_tool_error_callback": guardrails.on_tool_error,
    }
    specialist: dict[str, Any] = {
        "mode": "single_turn",
        "disallow_transfer_to_parent": True,
        "disallow_transfer_to_peers": True,
        "include_contents": "default",
    }
    diagnosis = LlmAgent(
        name=DIAGNOSIS,
        description=DIAGNOSIS_DESCRIPTION,
        model=model,
        instruction=instructions.diagnosis_provider(settings),
        tools=list(read_tools),
        output_schema=Diagnosis,
        output_key=DIAGNOSIS_KEY,
        **specialist,
        **callbacks,
    )
    sub_agents: list[BaseAgent] = [diagnosis]
    if write_tools is not None:
        sub_agents.append(
            LlmAgent(
                name=REMEDIATION,
                description=REMEDIATION_DESCRIPTION,
                model=model,
                instruction=instructions.remediation_provider(),
                tools=list(write_tools),
                output_key=REMEDIATION_REPORT_KEY,
                **specialist,
                **callbacks,
            )
        )
    return LlmAgent(
        name=COORDINATOR,
        description="AMOS: diagnoses and safely remediates one Kubernetes incident.",
        model=model,
        instruction=instructions.coordinator_provider(
            settings, remediation_enabled=write_tools is not None, off_reason=remediation_off_reason
        ),
        sub_agents=sub_agents,
        tools=list(coordinator_tools),
        **callbacks,
    )
