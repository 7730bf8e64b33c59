"""The offline model: deterministic rules behind ADK's `BaseLlm`, for when no model key is set.

It runs through the same graph, tools, guardrails and policy guard as Gemini does. It
reads only what a real model would: the system instruction (the incident record and
the approved actions are in delimited blocks there), the user request, and the tool
results in the conversation. Per agent it decides the next turn:

- coordinator: call `diagnosis`; then, when the diagnosis proposes actions and does not
  escalate, call `remediation`; then answer with a summary.
- diagnosis: read the workload with the read tools (two rounds), then answer through
  `set_model_response` with a `Diagnosis` from `analyze`.
- remediation: call the write tool of each approved action, one per turn, then report.

`analyze` is a pure function of the incident and the tool results.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from google.adk.models import BaseLlm, LlmCapabilities
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from kubernetes.utils import parse_quantity
from pydantic import ValidationError

from agents.guardrails import (
    DIAGNOSIS,
    REMEDIATION,
    SET_MODEL_RESPONSE,
    WRITE_TOOL_ACTIONS,
    canonical_call,
    parse_diagnosis,
)
from agents.instructions import ACTIONS_BEGIN, ACTIONS_END, INCIDENT_BEGIN, INCIDENT_END, instruction_text
from core.actions import Diagnosis, Rollback, SetResources
from core.models import FaultKind, Incident, ObjectRef

MEBI = Decimal(1024**2)
LOG_TAIL_LINES = 10
PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CRASH_REASONS = {"CrashLoopBackOff", "Error", "RunContainerError"}
_OBJECT_IN_TEXT = re.compile(r"\b(Deployment|Job|Pod)/([a-z0-9][a-z0-9.-]*)\s+-n\s+([a-z0-9][a-z0-9-]*)")
_NAMESPACED_TEXT = re.compile(
    r"\b(deployment|job|pod)\s+([a-z0-9][a-z0-9.-]*)\s+in\s+(?:the\s+)?(?:namespace\s+)?([a-z0-9][a-z0-9-]*)",
    re.IGNORECASE,
)


# --- reading the request ------------------------------------------------------------------------


@dataclass
class Exchange:
    """One tool call of the conversation and its response (None while unanswered)."""

    name: str
    args: dict[str, Any]
    response: Any = None
    answered: bool = False


def exchanges(llm_request: LlmRequest) -> list[Exchange]:
    found: list[Exchange] = []
    by_id: dict[str, Exchange] = {}
    for content in llm_request.contents:
        for part in content.parts or []:
            if part.function_call is not None:
                call = part.function_call
                exchange = Exchange(name=call.name or "", args=dict(call.args or {}))
                found.append(exchange)
                if call.id:
                    by_id[call.id] = exchange
            elif part.function_response is not None:
                response = part.function_response
                target = by_id.get(response.id or "") or next(
                    (e for e in found if e.name == response.name and not e.answered), None
                )
                if target is not None:
                    target.response, target.answered = response.response, True
    return found


def user_texts(llm_request: LlmRequest) -> list[str]:
    return [
        part.text
        for content in llm_request.contents
        if content.role == "user"
        for part in content.parts or []
        if part.text
    ]


def _system_text(llm_request: LlmRequest) -> str:
    return instruction_text(llm_request.config.system_instruction if llm_request.config else None)


def _block(text: str, begin: str, end: str) -> str | None:
    start = text.find(begin + "\n")
    if start < 0:
        return None
    stop = text.find("\n" + end, start)
    return text[start + len(begin) + 1 : stop if stop >= 0 else None]


def incident_from_request(llm_request: LlmRequest) -> Incident | ObjectRef | None:
    """The incident record from the instruction, else a workload named in the request text."""
    block = _block(_system_text(llm_request), INCIDENT_BEGIN, INCIDENT_END)
    if block:
        try:
            return Incident.model_validate_json(block)
        except ValidationError:
            pass
    for text in reversed(user_texts(llm_request)):
        workload = workload_in_text(text)
        if workload is not None:
            return workload
    return None


def workload_in_text(text: str) -> ObjectRef | None:
    """A workload named as `Deployment/web -n shop` or `deployment web in namespace shop`."""
    match = _OBJECT_IN_TEXT.search(text)
    if match:
        return ObjectRef(kind=match.group(1), name=match.group(2), namespace=match.group(3))
    match = _NAMESPACED_TEXT.search(text)
    if match:
        return ObjectRef(kind=match.group(1).capitalize(), name=match.group(2), namespace=match.group(3))
    return None


def _data(exchange: Exchange | None) -> Any:
    if exchange is None or not isinstance(exchange.response, dict) or not exchange.response.get("ok"):
        return None
    return exchange.response.get("data")


def _last(found: list[Exchange], tool: str, **match: Any) -> Exchange | None:
    for exchange in reversed(found):
        if exchange.name == tool and exchange.answered and all(exchange.args.get(k) == v for k, v in match.items()):
            return exchange
    return None


# --- the facts and the rules -------------------------------------------------------------------


@dataclass
class Facts:
    """What the read tools returned, in the shapes `tools.read` gives."""

    workload: dict[str, Any] | None = None  # describe of the workload
    pods: list[dict[str, Any]] = field(default_factory=list)  # list_pods rows
    revisions: list[dict[str, Any]] = field(default_factory=list)  # get_rollout_history revisions
    current_revision: int | None = None
    config: dict[str, Any] | None = None  # get_config_refs data
    events: list[dict[str, Any]] = field(default_factory=list)
    pod: dict[str, Any] | None = None  # describe of the focus pod
    logs: list[str] = field(default_factory=list)


def _statuses(facts: Facts) -> list[dict[str, Any]]:
    pod = facts.pod or {}
    return list(pod.get("containerStatuses") or []) + list(pod.get("initContainerStatuses") or [])


def _reasons(incident: Incident | None, facts: Facts) -> set[str]:
    reasons: set[str] = set()
    for status in _statuses(facts):
        for key in ("state", "lastState"):
            state = status.get(key) or {}
            if state.get("reason"):
                reasons.add(str(state["reason"]))
    for pod in facts.pods:
        if pod.get("reason"):
            reasons.add(str(pod["reason"]))
    if incident is not None:
        reasons.update(evidence.reason for evidence in incident.evidence)
    return reasons


def _template_containers(facts: Facts) -> list[dict[str, Any]]:
    workload = facts.workload or {}
    if workload.get("kind") == "Pod":
        return list(workload.get("containers") or [])
    return list((workload.get("template") or {}).get("containers") or [])


def _signature(revision: dict[str, Any]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            c.get("name"),
            c.get("image"),
            tuple(c.get("command") or ()),
            tuple(c.get("args") or ()),
            tuple(c.get("env_names") or ()),
        )
        for c in revision.get("containers") or []
    )


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    changed: set[str] = set()
    old_by_name = {c.get("name"): c for c in old.get("containers") or []}
    for container in new.get("containers") or []:
        before = old_by_name.get(container.get("name"), {})
        for key in ("image", "command", "args", "env_names"):
            if (before.get(key) or None) != (container.get(key) or None):
                changed.add(key)
    return changed


def _current_and_earlier(facts: Facts) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    revisions = [r for r in facts.revisions if isinstance(r.get("revision"), int)]
    current = next((r for r in revisions if r.get("current")), None)
    if current is None and facts.current_revision is not None:
        current = next((r for r in revisions if r["revision"] == facts.current_revision), None)
    if current is None:
        return None, []
    earlier = sorted(
        (r for r in revisions if r["revision"] < current["revision"] and _signature(r) != _signature(current)),
        key=lambda r: r["revision"],
    )
    return current, earlier


def _images(revision: dict[str, Any]) -> set[str]:
    return {str(c.get("image")) for c in revision.get("containers") or [] if c.get("image")}


def _log_tail(facts: Facts) -> str:
    for log in facts.logs:
        lines = [line for line in log.splitlines() if line.strip()]
        if lines:
            return "\n".join(lines[-LOG_TAIL_LINES:])
    return ""


def _state_messages(facts: Facts) -> list[str]:
    messages = []
    for status in _statuses(facts):
        for key in ("state", "lastState"):
            state = status.get(key) or {}
            if state.get("message"):
                messages.append(f"container {status.get('name')}: {state.get('reason')}: {state['message']}")
    return messages


def classify(incident: Incident | None, facts: Facts) -> FaultKind | None:
    """The fault to reason about: the incident's own kind, refined by what the pods show."""
    reasons = _reasons(incident, facts)
    kind = incident.kind if incident is not None else None
    if "OOMKilled" in reasons and kind in {
        None,
        FaultKind.CRASH_LOOP,
        FaultKind.OOM_KILLED,
        FaultKind.ROLLOUT_STUCK,
        FaultKind.REPLICAS_UNAVAILABLE,
    }:
        return FaultKind.OOM_KILLED
    if kind in {
        FaultKind.IMAGE_PULL,
        FaultKind.CONTAINER_CONFIG,
        FaultKind.UNSCHEDULABLE,
        FaultKind.JOB_FAILED,
        FaultKind.CRASH_LOOP,
        FaultKind.OOM_KILLED,
    }:
        return kind
    if reasons & PULL_REASONS:
        return FaultKind.IMAGE_PULL
    if "CreateContainerConfigError" in reasons or (facts.config or {}).get("missing"):
        return FaultKind.CONTAINER_CONFIG
    if "Unschedulable" in reasons or any(e.get("reason") == "FailedScheduling" for e in facts.events):
        return FaultKind.UNSCHEDULABLE
    if (facts.workload or {}).get("kind") == "Job" and ((facts.workload or {}).get("status") or {}).get("failed"):
        return FaultKind.JOB_FAILED
    if reasons & CRASH_REASONS:
        return FaultKind.CRASH_LOOP
    return kind


def _escalate(
    root_cause: str, category: str, reason: str, evidence: list[str], steps: list[str], confidence: float = 0.8
) -> Diagnosis:
    return Diagnosis(
        root_cause=root_cause,
        category=category,
        evidence=[item[:400] for item in evidence if item][:8],
        confidence=confidence,
        proposed_actions=[],
        escalate=True,
        escalation_reason=reason,
        human_steps=steps,
    )


def _crash_category(changed: set[str], log: str) -> str:
    if "image" in changed:
        return "bad_image"
    if changed & {"command", "args"}:
        return "bad_command"
    if "env_names" in changed:
        return "bad_env"
    lowered = log.lower()
    if "unknown flag" in lowered or "usage:" in lowered:
        return "bad_command"
    if "connection refused" in lowered or "no such host" in lowered:
        return "bad_env"
    return "unknown"


def raised_memory_limit(limit: str, factor: float) -> str:
    """`limit` times min(2, factor), rounded down to whole Mi (so never past the policy's bound)."""
    new = Decimal(parse_quantity(limit)) * Decimal(str(min(2.0, factor)))  # type: ignore[no-untyped-call]
    mebibytes = (new / MEBI).to_integral_value(rounding=ROUND_FLOOR)
    return f"{int(mebibytes)}Mi"


def analyze(incident: Incident | None, workload: ObjectRef, facts: Facts, *, max_memory_factor: float) -> Diagnosis:
    """The rules. Deterministic; every branch either proposes one bounded action or escalates."""
    ns, kind, name = workload.namespace, workload.kind, workload.name
    evidence = [f"{e.reason}: {e.message}".rstrip(": ") for e in (incident.evidence if incident else [])][:3]
    fault = classify(incident, facts)
    log_tail = _log_tail(facts)
    config = facts.config or {}
    current, earlier = _current_and_earlier(facts) if kind == "Deployment" else (None, [])

    if fault is FaultKind.CONTAINER_CONFIG or (fault is None and config.get("missing")):
        missing = (
            list(config.get("missing") or [])
            or [m for m in _state_messages(facts) if "not found" in m or "couldn't find key" in m]
            or [e.message for e in (incident.evidence if incident else []) if e.message]
        )
        what = "; ".join(missing) or "a referenced ConfigMap or Secret"
        return _escalate(
            root_cause=f"The pods of {kind}/{name} cannot start: {what}.",
            category="missing_config",
            reason=f"missing configuration: {what}. AMOS never creates or edits ConfigMaps or Secrets.",
            evidence=evidence + [f"missing: {item}" for item in missing],
            steps=[
                f"Create {item.removesuffix(' not found')} in namespace {ns}, or fix the reference in {kind}/{name}"
                for item in missing
            ]
            or [f"Find the missing reference of {kind}/{name} in namespace {ns}"],
            confidence=0.9,
        )

    if fault is FaultKind.UNSCHEDULABLE:
        scheduler = [
            e.get("message") for e in facts.events if e.get("reason") == "FailedScheduling" and e.get("message")
        ]
        conditions = [
            c.get("message")
            for c in (facts.pod or {}).get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("message")
        ]
        from_evidence = [e.message for e in (incident.evidence if incident else []) if e.message]
        why = (scheduler[-1:] or conditions[-1:] or from_evidence[-1:] or ["the scheduler gave no reason"])[0]
        return _escalate(
            root_cause=f"The pods of {kind}/{name} cannot be scheduled: {why}",
            category="unschedulable",
            reason=f"unschedulable: {why}",
            evidence=evidence + [f"scheduler: {why}"],
            steps=["Add capacity or fix the pod's node selector, affinity, tolerations or resource requests"],
            confidence=0.85,
        )

    if fault is FaultKind.JOB_FAILED:
        status = (facts.workload or {}).get("status") or {}
        conditions = [
            f"{c.get('type')}: {c.get('reason')}: {c.get('message')}"
            for c in (facts.workload or {}).get("conditions") or []
            if c.get("status") == "True"
        ]
        tail = log_tail or "(no log lines could be read)"
        return _escalate(
            root_cause=f"Job {name} failed ({status.get('failed', '?')} failed pods). Last log lines:\n{tail}",
            category="job_failure",
            reason=f"Job {name} failed; a failed batch run needs a human. Log tail:\n{tail}",
            evidence=evidence + conditions + [f"log tail: {tail}"],
            steps=[f"Read the full log of Job {name} in namespace {ns}, fix the cause, then re-run the Job"],
            confidence=0.8,
        )

    if fault is FaultKind.IMAGE_PULL:
        failing = sorted(
            {
                str(s.get("image"))
                for s in _statuses(facts)
                if (s.get("state") or {}).get("reason") in PULL_REASONS and s.get("image")
            }
        )
        if not failing and current is not None:
            failing = sorted(_images(current))
        messages = [m for m in _state_messages(facts) if any(r in m for r in PULL_REASONS)]
        candidates = [r for r in earlier if not (_images(r) & set(failing))]
        if current is not None and candidates:
            target = candidates[-1]
            return Diagnosis(
                root_cause=(
                    f"Revision {current['revision']} of Deployment/{name} uses image {', '.join(failing)}, "
                    f"which cannot be pulled; revision {target['revision']} ran "
                    f"{', '.join(sorted(_images(target)))}."
                ),
                category="bad_image",
                evidence=(
                    evidence
                    + messages[:2]
                    + [
                        f"current revision {current['revision']} images: {', '.join(sorted(_images(current)))}",
                        f"revision {target['revision']} images: {', '.join(sorted(_images(target)))}",
                    ]
                )[:8],
                confidence=0.9,
                proposed_actions=[Rollback(namespace=ns, name=name, to_revision=target["revision"])],
                human_steps=[
                    f"Publish the intended image or fix its reference before rolling Deployment/{name} forward again"
                ],
            )
        return _escalate(
            root_cause=f"Image {', '.join(failing) or '?'} of {kind}/{name} cannot be pulled, and there is no "
            "earlier revision with another image to return to.",
            category="bad_image",
            reason="the image cannot be pulled and no earlier revision exists to roll back to",
            evidence=evidence + messages[:2],
            steps=["Fix the image reference or the registry credentials of the workload"],
        )

    if fault is FaultKind.OOM_KILLED:
        named = next((e.container for e in (incident.evidence if incident else []) if e.container), None)
        oom = [
            s.get("name")
            for s in _statuses(facts)
            if "OOMKilled" in {(s.get("state") or {}).get("reason"), (s.get("lastState") or {}).get("reason")}
        ]
        container_name = named or (oom[0] if oom else None)
        containers = _template_containers(facts)
        container = next((c for c in containers if c.get("name") == container_name), None)
        if container is None and len(containers) == 1:
            container = containers[0]
        limit = ((container or {}).get("resources") or {}).get("limits", {}).get("memory")
        if kind not in {"Deployment", "Job"} or container is None or not limit:
            why = (
                "the container has no memory limit, so the kill came from node memory pressure"
                if container and not limit
                else f"AMOS changes resources only on a Deployment or Job, not on {kind}/{name}"
            )
            return _escalate(
                root_cause=f"Container {container_name or '?'} of {kind}/{name} was OOMKilled; {why}.",
                category="oom",
                reason=f"OOMKilled, but no bounded fix applies: {why}",
                evidence=evidence,
                steps=["Size the container's memory request and limit for what it really uses"],
            )
        new_limit = raised_memory_limit(str(limit), max_memory_factor)
        return Diagnosis(
            root_cause=(
                f"Container {container['name']} of {kind}/{name} needs more memory than its limit of "
                f"{limit} and is OOMKilled (exit code 137)."
            ),
            category="oom",
            evidence=(
                evidence
                + [
                    f"container {container['name']} memory limit {limit}",
                    f"last termination reason OOMKilled ({', '.join(str(o) for o in oom) or 'evidence'})",
                ]
            )[:8],
            confidence=0.85,
            proposed_actions=[
                SetResources.model_validate(
                    {
                        "namespace": ns,
                        "kind": kind,
                        "name": name,
                        "container": container["name"],
                        "memory_limit": new_limit,
                    }
                )
            ],
            human_steps=[
                (
                    f"Find out why {container['name']} needs more than {limit}; AMOS raised the limit to "
                    f"{new_limit} as a bounded stopgap"
                )
            ],
        )

    if fault is FaultKind.CRASH_LOOP:
        crashing_hashes = {
            str(p.get("revision_hash"))
            for p in facts.pods
            if p.get("revision_hash") and (p.get("restarts") or p.get("reason") in CRASH_REASONS)
        }
        current_hash = str((current or {}).get("replicaset") or "").rsplit("-", 1)[-1] if current else ""
        new_revision_crashes = not crashing_hashes or not current_hash or current_hash in crashing_hashes
        if current is not None and earlier and new_revision_crashes:
            target = earlier[-1]
            changed = _changed_fields(target, current)
            return Diagnosis(
                root_cause=(
                    f"The crash loop of Deployment/{name} started with revision {current['revision']}, which "
                    f"changed {', '.join(sorted(changed)) or 'the pod template'} from revision "
                    f"{target['revision']}." + (f" Last log lines:\n{log_tail}" if log_tail else "")
                ),
                category=_crash_category(changed, log_tail),
                evidence=(
                    evidence
                    + [
                        (
                            f"revision {current['revision']} is current; revision {target['revision']} "
                            f"differs in {', '.join(sorted(changed)) or 'its template'}"
                        )
                    ]
                    + ([f"log tail: {log_tail}"] if log_tail else [])
                )[:8],
                confidence=0.8,
                proposed_actions=[Rollback(namespace=ns, name=name, to_revision=target["revision"])],
                human_steps=[f"Fix the change introduced in revision {current['revision']} before rolling forward"],
            )
        tail = log_tail or "(no log lines could be read)"
        return _escalate(
            root_cause=f"{kind}/{name} is crash looping and there is no earlier revision to return to. "
            f"Last log lines:\n{tail}",
            category=_crash_category(set(), log_tail),
            reason="crash loop with no earlier healthy revision; the program or its configuration must be fixed",
            evidence=evidence + [f"log tail: {tail}"],
            steps=[f"Read the log of {kind}/{name} in namespace {ns} and fix the program or its configuration"],
            confidence=0.7,
        )

    return _escalate(
        root_cause=f"The offline rules recognise no known pattern for {kind}/{name}.",
        category="unknown",
        reason="no offline rule matched the incident; a human (or a model) must diagnose it",
        evidence=evidence + _state_messages(facts)[:2],
        steps=[f"Investigate {kind}/{name} in namespace {ns}"],
        confidence=0.2,
    )


# --- one turn per agent ---------------------------------------------------------------------------


def _call(tool: str, /, **args: Any) -> types.Part:
    return types.Part.from_function_call(name=tool, args=args)


def _text(text: str) -> types.Part:
    return types.Part.from_text(text=text)


def diagnosis_turn(llm_request: LlmRequest, *, max_memory_factor: float) -> list[types.Part]:
    found = exchanges(llm_request)
    identity = incident_from_request(llm_request)
    if identity is None:
        diagnosis = _escalate(
            root_cause="The offline rules could not tell which workload the incident is about.",
            category="unknown",
            reason="no workload named (expected 'Kind/name -n namespace')",
            evidence=[],
            steps=["Name the workload as Kind/name -n namespace"],
            confidence=0.0,
        )
        return [_call(SET_MODEL_RESPONSE, **diagnosis.model_dump(mode="json"))]
    incident = identity if isinstance(identity, Incident) else None
    workload = identity.workload if isinstance(identity, Incident) else identity
    ns, kind, name = workload.namespace, workload.kind, workload.name
    tools = set(llm_request.tools_dict)

    described = _last(found, "describe", kind=kind, name=name)
    if described is None:
        calls = [_call("describe", namespace=ns, kind=kind, name=name)]
        if kind != "Pod":
            calls.append(_call("list_pods", namespace=ns, workload_kind=kind, workload_name=name))
            calls.append(_call("get_events", namespace=ns, kind=kind, name=name))
        if kind == "Deployment":
            calls.append(_call("get_rollout_history", namespace=ns, deployment=name))
        calls.append(_call("get_config_refs", namespace=ns, kind=kind, name=name))
        return [call for call in calls if call.function_call and call.function_call.name in tools]

    facts = Facts(workload=_data(described))
    pods = (_data(_last(found, "list_pods")) or {}).get("pods") or []
    facts.pods = list(pods)
    history = _data(_last(found, "get_rollout_history")) or {}
    facts.revisions = list(history.get("revisions") or [])
    facts.current_revision = history.get("current_revision")
    facts.config = _data(_last(found, "get_config_refs"))

    focus = name if kind == "Pod" else _focus_pod(facts.pods, incident)
    if focus is not None and kind != "Pod" and _last(found, "describe", kind="Pod", name=focus) is None:
        calls = [
            _call("describe", namespace=ns, kind="Pod", name=focus),
            _call("get_events", namespace=ns, kind="Pod", name=focus),
        ]
        row = next((p for p in facts.pods if p.get("name") == focus), {})
        if row.get("restarts") or kind == "Job" or row.get("phase") == "Failed":
            calls.append(
                _call("get_pod_logs", namespace=ns, pod=focus, previous=bool(row.get("restarts")), tail_lines=50)
            )
        return [call for call in calls if call.function_call and call.function_call.name in tools]
    if kind == "Pod" and focus is not None:
        facts.pod = facts.workload
    elif focus is not None:
        facts.pod = _data(_last(found, "describe", kind="Pod", name=focus))
    for exchange in found:
        if exchange.name == "get_events":
            facts.events.extend((_data(exchange) or {}).get("events") or [])
        elif exchange.name == "get_pod_logs":
            log = (_data(exchange) or {}).get("log")
            if log:
                facts.logs.append(str(log))
    diagnosis = analyze(incident, workload, facts, max_memory_factor=max_memory_factor)
    return [_call(SET_MODEL_RESPONSE, **diagnosis.model_dump(mode="json"))]


def _focus_pod(pods: list[dict[str, Any]], incident: Incident | None) -> str | None:
    named = {ref.name for ref in (incident.affected if incident else []) if ref.kind == "Pod"}
    live = [p for p in pods if not p.get("deleting")]
    for pod in reversed(live):
        if pod.get("name") in named:
            return str(pod["name"])
    unhealthy = [
        p for p in live if p.get("reason") or p.get("restarts") or p.get("phase") not in {"Running", "Succeeded"}
    ]
    chosen = (unhealthy or live)[-1:]
    return str(chosen[0]["name"]) if chosen else None


def approved_calls(llm_request: LlmRequest) -> list[tuple[str, dict[str, Any]]]:
    block = _block(_system_text(llm_request), ACTIONS_BEGIN, ACTIONS_END) or ""
    calls = []
    for line in block.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if isinstance(item, dict) and item.get("tool") in WRITE_TOOL_ACTIONS and isinstance(item.get("args"), dict):
            calls.append((str(item["tool"]), dict(item["args"])))
    return calls


def remediation_turn(llm_request: LlmRequest) -> list[types.Part]:
    found = exchanges(llm_request)
    done = {canonical_call(e.name, e.args) for e in found if e.answered}
    for tool, args in approved_calls(llm_request):
        if canonical_call(tool, args) not in done and tool in llm_request.tools_dict:
            return [_call(tool, **args)]
    lines = []
    for exchange in found:
        response = exchange.response if isinstance(exchange.response, dict) else {}
        if response.get("ok"):
            data = response.get("data") or {}
            lines.append(f"{exchange.name}: {data.get('status', 'done')} ({data.get('summary', '')})")
        else:
            lines.append(f"{exchange.name}: not applied ({response.get('error') or 'no result'})")
    return [_text("Remediation finished. " + ("; ".join(lines) if lines else "There was nothing to apply."))]


def coordinator_turn(llm_request: LlmRequest) -> list[types.Part]:
    found = exchanges(llm_request)
    diagnosis_call = _last(found, DIAGNOSIS)
    if diagnosis_call is None:
        request = next(iter(user_texts(llm_request)), "Diagnose the incident in your instructions.")
        return [_call(DIAGNOSIS, request=request)]
    diagnosis: Diagnosis | None = None
    if isinstance(diagnosis_call.response, dict):
        try:
            diagnosis = Diagnosis.model_validate(diagnosis_call.response)
        except ValidationError:
            try:
                diagnosis = parse_diagnosis(str(diagnosis_call.response.get("result", "")))
            except ValueError:
                diagnosis = None
    remediation_call = _last(found, REMEDIATION)
    if (
        diagnosis is not None
        and not diagnosis.escalate
        and diagnosis.proposed_actions
        and REMEDIATION in llm_request.tools_dict
        and remediation_call is None
    ):
        return [_call(REMEDIATION, request="Apply the proposed actions.")]
    return [_text(_summary(diagnosis, diagnosis_call, remediation_call, REMEDIATION in llm_request.tools_dict))]


def _summary(
    diagnosis: Diagnosis | None, diagnosis_call: Exchange, remediation_call: Exchange | None, can_remediate: bool
) -> str:
    if diagnosis is None:
        return f"No usable diagnosis ({str(diagnosis_call.response)[:300]}); a human must investigate."
    lines = [f"Root cause ({diagnosis.category}, confidence {diagnosis.confidence:.2f}): {diagnosis.root_cause}"]
    if diagnosis.escalate:
        lines.append(f"Escalated: {diagnosis.escalation_reason}")
    elif remediation_call is not None:
        response = remediation_call.response
        result = response.get("result", response) if isinstance(response, dict) else response
        lines.append(f"Remediation: {str(result)[:500]}")
    elif diagnosis.proposed_actions:
        verb = "Recommended" if not can_remediate else "Proposed (not applied)"
        lines.append(f"{verb}: " + "; ".join(action.summary() for action in diagnosis.proposed_actions))
    for step in diagnosis.human_steps:
        lines.append(f"Human step: {step}")
    return "\n".join(lines)


class OfflineLlm(BaseLlm):
    """Deterministic rule-based stand-in for a model; needs no network and no key."""

    model: str = "amos-rules"
    max_memory_factor: float = 2.0

    @classmethod
    def supported_models(cls) -> list[str]:
        return [r"amos-rules(-.*)?"]

    @property
    def capabilities(self) -> LlmCapabilities:
        return LlmCapabilities(output_schema_and_tools=False)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        yield LlmResponse(
            content=types.Content(role="model", parts=self.next_turn(llm_request)),
            turn_complete=True,
            finish_reason=types.FinishReason.STOP,
            model_version=self.model,
            usage_metadata=types.GenerateContentResponseUsageMetadata(  # rules cost no tokens
                prompt_token_count=0, candidates_token_count=0, total_token_count=0
            ),
        )

    def next_turn(self, llm_request: LlmRequest) -> list[types.Part]:
        tools = set(llm_request.tools_dict)
        if SET_MODEL_RESPONSE in tools:
            return diagnosis_turn(llm_request, max_memory_factor=self.max_memory_factor)
        if tools & set(WRITE_TOOL_ACTIONS):
            return remediation_turn(llm_request)
        if DIAGNOSIS in tools:
            return coordinator_turn(llm_request)
        return [_text("The offline rules only run inside the AMOS agent graph; nothing to do here.")]
