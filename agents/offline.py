"""The offline model: deterministic rules behind ADK's `BaseLlm`, for when no model key is set.

It runs through the same graph, tools, guardrails and policy guard as Gemini does. It
reads only what a real model would: the system instruction (the incident record and
the approved actions are in delimited blocks there), the user request, and the tool
results in the conversation. Per agent it decides the next turn:

- coordinator: call `diagnosis`; then, when the diagnosis proposes actions and does not
  escalate, call `remediation`; then answer with a summary.
- diagnosis: read the workload with the read tools (up to three rounds: the workload and its
  history; the focus pod, its ReplicaSet's and a CronJob's runs; the log of the container that
  failed), then answer through `set_model_response` with a `Diagnosis` from `analyze`.
- remediation: call the write tool of each approved action, one per turn, then report.

`analyze` is a pure function of the incident and the tool results. Known-good first: a fault
that came with the current revision is undone by a rollback to the newest revision
get_rollout_history marks known-good, whatever the fault class and kind; only without one do
the bounded fixes (an OOM raises the effective memory limit) and the escalations apply.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from google.adk.models import BaseLlm, LlmCapabilities
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from pydantic import ValidationError

from agents.guardrails import DIAGNOSIS, REMEDIATION, SET_MODEL_RESPONSE, parse_diagnosis
from agents.instructions import ACTIONS_BEGIN, ACTIONS_END, INCIDENT_BEGIN, INCIDENT_END, instruction_text
from core import k8s
from core.actions import TOOL_ACTIONS, Category, Diagnosis, ProposedAction, Rollback, SetResources, parse_call
from core.models import FaultKind, Incident, ObjectRef

MEBI = Decimal(1024**2)
LOG_TAIL_LINES = 10
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


# --- the facts -----------------------------------------------------------------------------------


@dataclass
class Facts:
    """What the read tools returned, in the shapes `tools.read` gives."""

    workload: dict[str, Any] | None = None  # describe of the workload
    pods: list[dict[str, Any]] = field(default_factory=list)  # list_pods rows
    revisions: list[dict[str, Any]] = field(default_factory=list)  # get_rollout_history revisions
    current_revision: int | None = None
    config: dict[str, Any] | None = None  # get_config_refs data
    events: list[dict[str, Any]] = field(default_factory=list)  # of the workload, its ReplicaSet and the focus pod
    pod: dict[str, Any] | None = None  # describe of the focus pod
    logs: list[str] = field(default_factory=list)
    jobs: list[dict[str, Any]] = field(default_factory=list)  # describe of a CronJob's last Jobs
    rollback_target: dict[str, Any] | None = None  # get_rollout_history's {revision, source, reason}


def _statuses(facts: Facts) -> list[dict[str, Any]]:
    pod = facts.pod or {}
    return list(pod.get("containerStatuses") or []) + list(pod.get("initContainerStatuses") or [])


def _init_statuses(facts: Facts) -> list[dict[str, Any]]:
    return list((facts.pod or {}).get("initContainerStatuses") or [])


def _status_reasons(status: dict[str, Any]) -> set[str]:
    return {
        str((status.get(key) or {}).get("reason"))
        for key in ("state", "lastState")
        if (status.get(key) or {}).get("reason")
    }


def _reasons(incident: Incident | None, facts: Facts) -> set[str]:
    reasons: set[str] = set()
    for status in _statuses(facts):
        reasons |= _status_reasons(status)
    for pod in facts.pods:
        if pod.get("reason"):
            reasons.add(str(pod["reason"]))
    if incident is not None:
        reasons.update(evidence.reason for evidence in incident.evidence)
    return reasons


def _template(facts: Facts) -> dict[str, Any]:
    workload = facts.workload or {}
    return workload if workload.get("kind") == "Pod" else dict(workload.get("template") or {})


def _template_containers(facts: Facts) -> list[dict[str, Any]]:
    """The pod template's containers; from the current revision when the workload could not be described."""
    template = _template(facts)
    found = list(template.get("containers") or []) + list(template.get("initContainers") or [])
    if found:
        return found
    current = next((r for r in facts.revisions if r.get("current") is True), None)
    return list(_containers_of(current).values()) if current else []


def _evidence_messages(incident: Incident | None) -> list[str]:
    return [e.message for e in (incident.evidence if incident else []) if e.message]


def _events(facts: Facts, *reasons: str) -> list[str]:
    return [str(e.get("message")) for e in facts.events if e.get("reason") in reasons and e.get("message")]


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


# --- the rollout history: which revision is known-good, and what a revision changed ----------------

_GOOD_WORDS = ("known-good", "known_good", "good", "healthy")
_BAD_WORDS = ("known-bad", "known_bad", "bad", "failing", "failed")
_MARK_KEYS = ("known", "health", "verdict", "mark", "marking", "label", "state", "status", "known_state")
_CHANGE_KEYS = ("changed", "changes", "change", "diff")


def _mark_text(revision: dict[str, Any]) -> str:
    for key in _MARK_KEYS:
        value = revision.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return ""


def verdict(revision: dict[str, Any]) -> str | None:
    """`good`, `bad` or None (not known), from the marks get_rollout_history puts on a revision
    (`known_good: recorded|inferred`, `known_bad: true`, or a word such as "known-good")."""
    if revision.get("known_bad") is True:
        return "bad"
    known_good = revision.get("known_good")
    if known_good is True or (isinstance(known_good, str) and known_good.strip()):
        return "good"
    text = _mark_text(revision)
    if any(text.startswith(word) for word in _BAD_WORDS):
        return "bad"
    if any(text.startswith(word) for word in _GOOD_WORDS):
        return "good"
    return None


def how_known(revision: dict[str, Any]) -> str | None:
    """`recorded` (AMOS saw it healthy) or `inferred` (from ReplicaSet/ControllerRevision status)."""
    for key in ("known_good", "source", "known_good_source", "how"):
        value = revision.get(key)
        if isinstance(value, str) and value.strip().lower() in {"recorded", "inferred"}:
            return value.strip().lower()
    text = _mark_text(revision)
    return next((word for word in ("recorded", "inferred") if word in text), None)


def _history_is_marked(revisions: list[dict[str, Any]]) -> bool:
    """Whether the history says what is known-good at all (then an unmarked revision is not a target)."""
    return any("known_good" in r or "known_bad" in r or verdict(r) is not None for r in revisions)


def _containers_of(revision: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for key in ("containers", "initContainers", "init_containers"):
        for container in revision.get(key) or []:
            found[str(container.get("name"))] = container
    return found


_POD_FIELDS = ("nodeSelector", "affinity", "tolerations", "node_selector")
_CONTAINER_FIELDS = (
    "image",
    "command",
    "args",
    "env_names",
    "env",
    "envFrom",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
)
_FIELD_WORDS = {
    "image": "image",
    "command": "command",
    "args": "args",
    "env_names": "env",
    "env": "env",
    "envFrom": "envFrom",
    "resources": "resources",
    "livenessProbe": "liveness probe",
    "readinessProbe": "readiness probe",
    "startupProbe": "startup probe",
    "nodeSelector": "node selector",
    "node_selector": "node selector",
    "affinity": "affinity",
    "tolerations": "tolerations",
}


def _signature(revision: dict[str, Any]) -> str:
    shown = {name: {k: c.get(k) for k in _CONTAINER_FIELDS} for name, c in _containers_of(revision).items()}
    return json.dumps([shown, {k: revision.get(k) for k in _POD_FIELDS}], sort_keys=True, default=str)


def _short(value: Any, key: str = "") -> str:
    """A field's value as a person reads it: `limits memory=256Mi`, `httpGet /healthz on port 8080`."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        text = " ".join(value) or "(none)"
    elif key == "resources" and isinstance(value, dict):
        text = ", ".join(
            f"{section} {resource}={quantity}"
            for section in ("requests", "limits")
            for resource, quantity in sorted((value.get(section) or {}).items())
        )
    elif key == "envFrom" and isinstance(value, list):
        text = ", ".join(
            f"{'ConfigMap' if ref_key.startswith('configMap') else 'Secret'} {_ref_name(ref)}"
            for source in value
            if isinstance(source, dict)
            for ref_key, ref in source.items()
        )
    elif key.endswith("Probe") and isinstance(value, dict):
        handler = next((h for h in ("httpGet", "tcpSocket", "grpc", "exec") if h in value), "")
        detail = value.get(handler) or {}
        where = f" {detail.get('path')}" if isinstance(detail, dict) and detail.get("path") else ""
        port = f" on port {detail.get('port')}" if isinstance(detail, dict) and detail.get("port") else ""
        text = f"{handler}{where}{port}" or json.dumps(value, sort_keys=True, default=str)
    else:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:119] + "…"


def _ref_name(ref: Any) -> str:
    return str(ref.get("name")) if isinstance(ref, dict) else str(ref)


def changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What revision `new` changed from `old`, in words: "the image of container web changed from a to b"."""
    found: list[str] = []
    before, after = _containers_of(old), _containers_of(new)
    for name, container in after.items():
        if name not in before:
            found.append(f"container {name} ({container.get('image')}) added")
            continue
        previous = before[name]
        for key in _CONTAINER_FIELDS:
            if key == "env" and "env_names" in container:
                continue
            was, now = previous.get(key) or None, container.get(key) or None
            if was == now:
                continue
            word = _FIELD_WORDS[key]
            if key == "env_names":
                added = sorted(set(now or []) - set(was or []))
                removed = sorted(set(was or []) - set(now or []))
                if added:
                    found.append(f"env {', '.join(added)} added to container {name}")
                if removed:
                    found.append(f"env {', '.join(removed)} removed from container {name}")
            elif was is None:
                found.append(f"{word} {_short(now, key)} added to container {name}")
            elif now is None:
                found.append(f"the {word} of container {name} removed")
            else:
                found.append(f"the {word} of container {name} changed from {_short(was, key)} to {_short(now, key)}")
    found.extend(f"container {name} removed" for name in before if name not in after)
    for key in _POD_FIELDS:
        was, now = old.get(key) or None, new.get(key) or None
        if was != now:
            word = _FIELD_WORDS[key]
            found.append(f"the pod's {word} set to {_short(now)}" if now else f"the pod's {word} removed")
    if not found:
        stated = next((new[key] for key in _CHANGE_KEYS if new.get(key)), None)
        if isinstance(stated, list):
            found = [str(item) for item in stated if item]
        elif stated:
            found = [str(stated)]
    return found


def _changed_fields(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    fields: set[str] = set()
    before = _containers_of(old)
    for name, container in _containers_of(new).items():
        for key in _CONTAINER_FIELDS:
            if (before.get(name, {}).get(key) or None) != (container.get(key) or None):
                fields.add("env_names" if key == "env" else key)
    return fields


def _images(revision: dict[str, Any]) -> set[str]:
    return {str(c.get("image")) for c in _containers_of(revision).values() if c.get("image")}


@dataclass
class History:
    """The rollout history read for a decision: the current revision, and which earlier one to return to."""

    current: dict[str, Any] | None
    target: dict[str, Any] | None  # the newest known-good earlier revision with another template
    marked: bool  # whether get_rollout_history said which revisions are known-good
    skipped_bad: list[int] = field(default_factory=list)  # known-bad revisions passed over
    reason: str | None = None  # the tool's words on the target (or on why there is none)

    def describe_target(self) -> str:
        if self.target is None:
            return ""
        how = how_known(self.target) or str(self.target.get("note") or "").split(":", 1)[0].strip() or None
        if how not in {"recorded", "inferred"}:
            how = None
        if not self.marked:
            return f"revision {self.target['revision']} (the newest earlier revision with another pod template)"
        return f"revision {self.target['revision']} (known-good{', ' + how if how else ''})"


def revision_name(revision: dict[str, Any]) -> str:
    """`revision 3`, or a CronJob's job template AMOS never saw succeed (it has no number)."""
    number = revision.get("revision")
    return f"revision {number}" if isinstance(number, int) else "the current job template"


def _number(revision: dict[str, Any]) -> float:
    number = revision.get("revision")
    return float(number) if isinstance(number, int) else math.inf  # a CronJob's unrecorded current template


def read_history(facts: Facts, failing_images: set[str] | None = None) -> History:
    entries = [r for r in facts.revisions if isinstance(r.get("revision"), int) or r.get("current") is True]
    revisions = sorted(entries, key=_number)
    current = next((r for r in revisions if r.get("current") is True), None)
    if current is None and facts.current_revision is not None:
        current = next((r for r in revisions if r.get("revision") == facts.current_revision), None)
    marked = _history_is_marked(revisions) or facts.rollback_target is not None
    reason = str((facts.rollback_target or {}).get("reason") or "") or None
    if current is None:
        return History(current=None, target=None, marked=marked, reason=reason)
    earlier = [r for r in revisions if _number(r) < _number(current) and _signature(r) != _signature(current)]
    skipped = [int(r["revision"]) for r in earlier if verdict(r) == "bad"]
    chosen = (facts.rollback_target or {}).get("revision")
    if isinstance(chosen, int):  # the tool's choice (it compares template digests, not what AMOS is shown)
        candidates = [r for r in revisions if r.get("revision") == chosen and r is not current and verdict(r) != "bad"]
    elif marked:
        candidates = [r for r in earlier if verdict(r) == "good"]
    else:  # a history without marks: the newest earlier template that does not run the failing image
        candidates = [r for r in earlier if not (_images(r) & (failing_images or set()))]
    target = candidates[-1] if candidates else None
    return History(current=current, target=target, marked=marked, skipped_bad=skipped, reason=reason)


def _started_with_current(facts: Facts, history: History) -> bool:
    """Whether the failing pods run the current revision (a fault that came with it), not an old one."""
    current = history.current
    if current is None or verdict(current) == "good":
        return False
    crashing = {
        str(p.get("revision_hash"))
        for p in facts.pods
        if p.get("revision_hash") and (p.get("restarts") or p.get("reason") or p.get("phase") not in {"Running", None})
    }
    current_hash = str(current.get("replicaset") or current.get("hash") or "").rsplit("-", 1)[-1]
    return not crashing or not current_hash or current_hash in crashing


# --- classifying the fault -------------------------------------------------------------------------

PROBE_KINDS = {FaultKind.LIVENESS_FAILED, FaultKind.NOT_READY}
_QUOTA_WORDS = ("exceeded quota", "forbidden", "limitrange", "maximum", "minimum", "must specify")


def classify(incident: Incident | None, facts: Facts) -> FaultKind | None:
    """The fault to reason about: the incident's own kind, refined by what the pods show."""
    reasons = _reasons(incident, facts)
    kind = incident.kind if incident is not None else None
    if k8s.OOM_KILLED_REASON in reasons and kind in {
        None,
        FaultKind.CRASH_LOOP,
        FaultKind.OOM_KILLED,
        FaultKind.ROLLOUT_STUCK,
        FaultKind.REPLICAS_UNAVAILABLE,
        FaultKind.INIT_CONTAINER,
    }:
        return FaultKind.OOM_KILLED
    if kind is FaultKind.INIT_CONTAINER:
        init_reasons = {r for s in _init_statuses(facts) for r in _status_reasons(s)} or reasons
        if init_reasons & k8s.IMAGE_PULL_REASONS:
            return FaultKind.IMAGE_PULL
        if k8s.CONTAINER_CONFIG_REASON in init_reasons:
            return FaultKind.CONTAINER_CONFIG
        return FaultKind.INIT_CONTAINER
    if kind in {
        FaultKind.IMAGE_PULL,
        FaultKind.CONTAINER_CONFIG,
        FaultKind.UNSCHEDULABLE,
        FaultKind.JOB_FAILED,
        FaultKind.CRASH_LOOP,
        FaultKind.OOM_KILLED,
        FaultKind.LIVENESS_FAILED,
        FaultKind.NOT_READY,
        FaultKind.FAILED_CREATE,
    }:
        return kind
    if reasons & k8s.IMAGE_PULL_REASONS:
        return FaultKind.IMAGE_PULL
    if k8s.CONTAINER_CONFIG_REASON in reasons or (facts.config or {}).get("missing"):
        return FaultKind.CONTAINER_CONFIG
    if _events(facts, "FailedCreate"):
        return FaultKind.FAILED_CREATE
    if k8s.UNSCHEDULABLE_REASON in reasons or _events(facts, "FailedScheduling"):
        return FaultKind.UNSCHEDULABLE
    if (facts.workload or {}).get("kind") == "Job" and ((facts.workload or {}).get("status") or {}).get("failed"):
        return FaultKind.JOB_FAILED
    if reasons & k8s.CRASH_REASONS:
        return FaultKind.CRASH_LOOP
    if _events(facts, "Unhealthy"):
        probe = " ".join(_events(facts, "Unhealthy")).lower()
        return FaultKind.LIVENESS_FAILED if "liveness" in probe else FaultKind.NOT_READY
    return kind


def _crash_category(changed: set[str], log: str) -> Category:
    if "image" in changed:
        return Category.BAD_IMAGE
    if changed & {"command", "args"}:
        return Category.BAD_COMMAND
    if changed & {"env_names", "envFrom"}:
        return Category.BAD_ENV
    lowered = log.lower()
    if "unknown flag" in lowered or "usage:" in lowered:
        return Category.BAD_COMMAND
    if "connection refused" in lowered or "no such host" in lowered:
        return Category.BAD_ENV
    return Category.UNKNOWN


def category_of(fault: FaultKind | None, changed: set[str], log: str) -> Category:
    """The root-cause class a fault (and what its revision changed) belongs to."""
    fixed = {
        FaultKind.IMAGE_PULL: Category.BAD_IMAGE,
        FaultKind.CONTAINER_CONFIG: Category.MISSING_CONFIG,
        FaultKind.OOM_KILLED: Category.OOM,
        FaultKind.UNSCHEDULABLE: Category.UNSCHEDULABLE,
        FaultKind.FAILED_CREATE: Category.QUOTA,
        FaultKind.LIVENESS_FAILED: Category.PROBE,
        FaultKind.NOT_READY: Category.PROBE,
        FaultKind.JOB_FAILED: Category.JOB_FAILURE,
    }
    if fault in fixed:
        return fixed[fault]
    category = _crash_category(changed, log)
    return Category.BAD_ROLLOUT if category is Category.UNKNOWN and changed else category


# --- what a person must do before rolling forward --------------------------------------------------

_MISSING_OBJECT = re.compile(r"^(ConfigMap|Secret) (\S+) not found$")
_MISSING_KEYS = re.compile(r"^(ConfigMap|Secret) (\S+) has no key (.+)$")
_KUBELET_MISSING = re.compile(r'(configmap|secret) "([^"]+)" not found', re.IGNORECASE)
_KUBELET_KEY = re.compile(r"couldn't find key (\S+) in (ConfigMap|Secret) [^/\s]*/?(\S+)", re.IGNORECASE)


def missing_config(incident: Incident | None, facts: Facts) -> list[str]:
    """What is missing, as get_config_refs says it ("ConfigMap x not found", "Secret y has no key k")."""
    listed = list((facts.config or {}).get("missing") or [])
    if listed:
        return listed
    found: list[str] = []
    for text in _state_messages(facts) + _evidence_messages(incident) + _events(facts, "Failed"):
        for kind, name in _KUBELET_MISSING.findall(text):
            _add(found, f"{'ConfigMap' if kind.lower() == 'configmap' else 'Secret'} {name} not found")
        for key, kind, name in _KUBELET_KEY.findall(text):
            _add(found, f"{'ConfigMap' if kind.lower() == 'configmap' else 'Secret'} {name} has no key {key}")
    return found


def _add(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def config_step(item: str, namespace: str) -> str:
    """ "Secret db not found" -> "create Secret db in namespace shop"; a missing key -> "create key k in ..." """
    if match := _MISSING_OBJECT.match(item):
        return f"create {match.group(1)} {match.group(2)} in namespace {namespace}"
    if match := _MISSING_KEYS.match(item):
        keys = [key.strip() for key in match.group(3).split(",")]
        noun = "key" if len(keys) == 1 else "keys"
        return f"create {noun} {' and '.join(keys)} in {match.group(1)} {match.group(2)}"
    return f"provide what this needs: {item}"


def _requests(facts: Facts, history: History | None = None) -> list[str]:
    """The resource requests and limits of each container, as the template asks for them."""
    containers = _template_containers(facts) or list(
        _containers_of((history.current if history else None) or {}).values()
    )
    found = []
    for container in containers:
        resources = container.get("resources") or {}
        parts = [
            f"{section.removesuffix('s')} {resource}={value}"
            for section in ("requests", "limits")
            for resource, value in sorted((resources.get(section) or {}).items())
        ]
        if parts:
            found.append(f"container {container.get('name')}: {', '.join(parts)}")
    return found


def roll_forward_step(fault: FaultKind | None, ref: str, changed: list[str], missing: list[str], namespace: str) -> str:
    """The one thing a person must do before rolling the bad revision forward again."""
    what = "; ".join(changed) or "the change of the bad revision"
    if fault is FaultKind.CONTAINER_CONFIG and missing:
        return f"{_sentence(' and '.join(config_step(item, namespace) for item in missing))}, then roll {ref} forward"
    if fault is FaultKind.IMAGE_PULL:
        return f"Publish the intended image or fix its reference ({what}), then roll {ref} forward"
    if fault is FaultKind.OOM_KILLED:
        return f"Give the container a memory limit that fits what it uses ({what}), then roll {ref} forward"
    if fault is FaultKind.UNSCHEDULABLE:
        return f"Ask for what a node can offer or add capacity ({what}), then roll {ref} forward"
    if fault is FaultKind.FAILED_CREATE:
        return f"Fit the pods to the namespace's ResourceQuota and LimitRange, or raise them ({what}), then roll {ref} forward"
    if fault in PROBE_KINDS:
        return f"Fix the probe or the port and path it checks ({what}), then roll {ref} forward"
    return f"Fix {what}, then roll {ref} forward"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


# --- the rules -----------------------------------------------------------------------------------


def _escalate(
    root_cause: str,
    category: Category,
    reason: str,
    evidence: list[str],
    steps: list[str],
    confidence: float = 0.8,
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


def raised_memory_limit(limit: str, factor: float) -> str:
    """`limit` times min(2, factor), rounded down to whole Mi (so never past the policy's bound)."""
    new = k8s.parse_quantity(limit) * Decimal(str(min(2.0, factor)))
    mebibytes = (new / MEBI).to_integral_value(rounding=ROUND_FLOOR)
    return f"{int(mebibytes)}Mi"


def _failing_images(facts: Facts) -> set[str]:
    return {
        str(s.get("image")) for s in _statuses(facts) if _status_reasons(s) & k8s.IMAGE_PULL_REASONS and s.get("image")
    }


def analyze(incident: Incident | None, workload: ObjectRef, facts: Facts, *, max_memory_factor: float) -> Diagnosis:
    """The rules. Deterministic; every branch either proposes one bounded action or escalates.

    Known-good first: a fault that came with the current revision is undone by returning to the
    newest earlier revision known to have been healthy, whatever the fault; the bounded fixes and
    escalations below are for faults no known-good revision can undo.
    """
    kind = workload.kind
    evidence = [f"{e.reason}: {e.message}".rstrip(": ") for e in (incident.evidence if incident else [])][:3]
    fault = classify(incident, facts)
    history = (
        read_history(facts, _failing_images(facts)) if kind in k8s.REVISIONED_KINDS else History(None, None, False)
    )
    if fault is not None and history.target is not None and _started_with_current(facts, history):
        return _restore_known_good(incident, workload, facts, fault, history, evidence)
    if fault is FaultKind.CONTAINER_CONFIG or (fault is None and (facts.config or {}).get("missing")):
        return _missing_config(incident, workload, facts, history, evidence)
    if fault in {FaultKind.UNSCHEDULABLE, FaultKind.FAILED_CREATE}:
        return _pods_not_made(fault, incident, workload, facts, history, evidence)
    if fault is FaultKind.OOM_KILLED:
        return _oom(incident, workload, facts, evidence, max_memory_factor)
    if fault is FaultKind.JOB_FAILED:
        return _job_failed(workload, facts, history, evidence)
    if fault in PROBE_KINDS:
        return _probe(workload, facts, history, fault, evidence)
    if fault in {FaultKind.IMAGE_PULL, FaultKind.CRASH_LOOP, FaultKind.INIT_CONTAINER}:
        return _no_revision_to_return_to(workload, facts, history, fault, evidence)
    return _escalate(
        root_cause=f"The offline rules recognise no known pattern for {kind}/{workload.name}.",
        category=Category.UNKNOWN,
        reason="no offline rule matched the incident; a human (or a model) must diagnose it",
        evidence=evidence + _state_messages(facts)[:2],
        steps=[f"Investigate {kind}/{workload.name} in namespace {workload.namespace}"],
        confidence=0.2,
    )


def _symptom(fault: FaultKind, incident: Incident | None, facts: Facts) -> str:
    """The failure in the cluster's words: the scheduler's, the admission's or the kubelet's message."""
    if fault is FaultKind.UNSCHEDULABLE:
        found = _events(facts, "FailedScheduling")
    elif fault is FaultKind.FAILED_CREATE:
        found = _events(facts, "FailedCreate")
    elif fault in PROBE_KINDS:
        found = _events(facts, "Unhealthy")
    else:
        found = [m for m in _state_messages(facts) if m]
    found = found or _evidence_messages(incident)
    return found[-1] if found else ""


def _restore_known_good(
    incident: Incident | None,
    workload: ObjectRef,
    facts: Facts,
    fault: FaultKind,
    history: History,
    evidence: list[str],
) -> Diagnosis:
    assert history.current is not None and history.target is not None
    ns, kind, name = workload.namespace, workload.kind, workload.name
    ref = f"{kind}/{name}"
    current, target = history.current, history.target
    changed = changes(target, current)
    log_tail = _log_tail(facts)
    category = category_of(fault, _changed_fields(target, current), log_tail)
    missing = missing_config(incident, facts) if fault is FaultKind.CONTAINER_CONFIG else []
    symptom = _symptom(fault, incident, facts)
    what = "; ".join(changed) or "a change of its pod template"
    root_cause = (
        f"The {fault.value} of {ref} started with {revision_name(current)} ({what}). "
        f"AMOS returns it to {history.describe_target()}."
    )
    if missing:
        root_cause += f" Missing: {'; '.join(missing)}."
    elif symptom:
        root_cause += f" The cluster says: {symptom}"
    if log_tail and fault not in {FaultKind.IMAGE_PULL, FaultKind.CONTAINER_CONFIG, FaultKind.UNSCHEDULABLE}:
        root_cause += f"\nLast log lines:\n{log_tail}"
    skipped = (
        [f"known-bad revisions passed over: {', '.join(str(n) for n in history.skipped_bad)}"]
        if history.skipped_bad
        else []
    )
    return Diagnosis(
        root_cause=root_cause,
        category=category,
        evidence=(
            evidence
            + [f"{revision_name(current)} is current; it brought: {what}"]
            + [
                f"{history.describe_target()} is the rollback target"
                + (f": {history.reason}" if history.reason else "")
            ]
            + skipped
            + ([f"missing: {item}" for item in missing] or ([f"cluster: {symptom}"] if symptom else []))
            + ([f"log tail: {log_tail}"] if log_tail else [])
        )[:8],
        confidence=0.9 if history.marked else 0.8,
        proposed_actions=[
            Rollback.model_validate({"namespace": ns, "name": name, "kind": kind, "to_revision": target["revision"]})
        ],
        human_steps=[roll_forward_step(fault, ref, changed, missing, ns)],
    )


def _no_known_good(history: History) -> str:
    """Why there is no revision to return to, for the report."""
    if history.current is None:
        return "there is no rollout history to return to"
    if history.marked:
        bad = f" (known-bad: {', '.join(str(n) for n in history.skipped_bad)})" if history.skipped_bad else ""
        said = f" ({history.reason})" if history.reason and history.target is None else ""
        return f"no earlier revision is known-good{bad}{said}, and AMOS never rolls back to one it has not seen healthy"
    return "there is no earlier revision with another pod template to return to"


def _missing_config(
    incident: Incident | None, workload: ObjectRef, facts: Facts, history: History, evidence: list[str]
) -> Diagnosis:
    ns, kind, name = workload.namespace, workload.kind, workload.name
    missing = missing_config(incident, facts) or _evidence_messages(incident)
    what = "; ".join(missing) or "a referenced ConfigMap or Secret"
    steps = [f"{_sentence(config_step(item, ns))}, or fix the reference in {kind}/{name}" for item in missing]
    return _escalate(
        root_cause=f"The pods of {kind}/{name} cannot start: {what}.",
        category=Category.MISSING_CONFIG,
        reason=f"missing configuration: {what}. AMOS never creates or edits ConfigMaps or Secrets"
        + (f", and {_no_known_good(history)}." if kind in k8s.REVISIONED_KINDS else "."),
        evidence=evidence + [f"missing: {item}" for item in missing],
        steps=steps or [f"Find the missing reference of {kind}/{name} in namespace {ns}"],
        confidence=0.9,
    )


def _pods_not_made(
    fault: FaultKind,
    incident: Incident | None,
    workload: ObjectRef,
    facts: Facts,
    history: History,
    evidence: list[str],
) -> Diagnosis:
    """Pods that never run: no node fits them (unschedulable), or admission refused them (FailedCreate).

    What they ask for is the first thing a person compares with the nodes or the quota, so every part names it.
    """
    kind, name, ns = workload.kind, workload.name, workload.namespace
    if fault is FaultKind.UNSCHEDULABLE:
        conditions = [
            c.get("message")
            for c in (facts.pod or {}).get("conditions") or []
            if c.get("type") == "PodScheduled" and c.get("message")
        ]
        why = (
            _events(facts, "FailedScheduling")[-1:]
            or conditions[-1:]
            or _evidence_messages(incident)[-1:]
            or ["the scheduler gave no reason"]
        )[0]
        source, category, reason = "scheduler", Category.UNSCHEDULABLE, "unschedulable"
        root_cause = f"The pods of {kind}/{name} cannot be scheduled"
        step = "Add capacity or fix the pod's node selector, affinity, tolerations or resource requests"
    else:
        why = (_events(facts, "FailedCreate")[-1:] or _evidence_messages(incident)[-1:] or ["no message was recorded"])[
            0
        ]
        source, category, reason = "admission", Category.QUOTA, "pod creation refused by admission"
        root_cause = f"The controller of {kind}/{name} cannot create its pods; the API server refused them"
        step = (
            f"Raise the ResourceQuota of namespace {ns} or lower the requests of {kind}/{name}"
            if "quota" in why.lower()
            else f"Fit the resources of {kind}/{name} to the LimitRange of namespace {ns}, or change the LimitRange"
        )
    asked = _requests(facts, history)
    return _escalate(
        root_cause=f"{root_cause}: {why}" + (f" The pods ask for {'; '.join(asked)}." if asked else ""),
        category=category,
        reason=f"{reason}: {why}"
        + (f" Requested: {'; '.join(asked)}." if asked else "")
        + (f" {_sentence(_no_known_good(history))}." if kind in k8s.REVISIONED_KINDS else ""),
        evidence=evidence + [f"{source}: {why}"] + [f"request: {item}" for item in asked],
        steps=[step],
        confidence=0.85,
    )


def _memory_limit(container: dict[str, Any] | None) -> str | None:
    value = (((container or {}).get("resources") or {}).get("limits") or {}).get("memory")
    return str(value) if value else None


def _oom(
    incident: Incident | None, workload: ObjectRef, facts: Facts, evidence: list[str], max_memory_factor: float
) -> Diagnosis:
    kind, name, ns = workload.kind, workload.name, workload.namespace
    named = next((e.container for e in (incident.evidence if incident else []) if e.container), None)
    oom = [s.get("name") for s in _statuses(facts) if k8s.OOM_KILLED_REASON in _status_reasons(s)]
    container_name = named or (oom[0] if oom else None)
    containers = _template_containers(facts)
    container = next((c for c in containers if c.get("name") == container_name), None)
    if container is None and len(containers) == 1:
        container = containers[0]
    pod = facts.pod or {}
    pod_containers = list(pod.get("containers") or []) + list(pod.get("initContainers") or [])
    in_pod = next((c for c in pod_containers if c.get("name") == (container or {}).get("name", container_name)), None)
    template_limit, pod_limit = _memory_limit(container), _memory_limit(in_pod)
    limit = template_limit or pod_limit  # the pod's own limit is the effective one when the template has none
    source = "the pod template" if template_limit else "the namespace's LimitRange default, as set on the pod"
    if kind not in k8s.WORKLOAD_KINDS or container is None or not limit:
        why = (
            "the container has no memory limit (neither in its template nor from a LimitRange), so the kill came "
            "from node memory pressure"
            if container is not None and not limit
            else f"AMOS changes resources only on a workload with a pod template, not on {kind}/{name}"
        )
        tail = _log_tail(facts)
        return _escalate(
            root_cause=f"Container {container_name or '?'} of {kind}/{name} was OOMKilled; {why}."
            + (f" Last log lines:\n{tail}" if tail and kind == "Pod" else ""),
            category=Category.OOM,
            reason=f"OOMKilled, but no bounded fix applies: {why}",
            evidence=evidence + ([f"log tail: {tail}"] if tail else []),
            steps=["Size the container's memory request and limit for what it really uses"],
        )
    new_limit = raised_memory_limit(limit, max_memory_factor)
    return Diagnosis(
        root_cause=(
            f"Container {container['name']} of {kind}/{name} needs more memory than its limit of {limit} "
            f"(from {source}) and is OOMKilled (exit code 137)."
        ),
        category=Category.OOM,
        evidence=(
            evidence
            + [
                f"container {container['name']} memory limit {limit}, from {source}",
                f"last termination reason OOMKilled ({', '.join(str(o) for o in oom) or 'evidence'})",
            ]
        )[:8],
        confidence=0.85,
        proposed_actions=[
            SetResources.model_validate(
                {"namespace": ns, "kind": kind, "name": name, "container": container["name"], "memory_limit": new_limit}
            )
        ],
        human_steps=[
            f"Find out why {container['name']} needs more than {limit}; AMOS raised the limit to {new_limit} as a "
            + "bounded stopgap"
        ],
    )


def _job_failed(workload: ObjectRef, facts: Facts, history: History, evidence: list[str]) -> Diagnosis:
    kind, name, ns = workload.kind, workload.name, workload.namespace
    log_tail = _log_tail(facts)
    tail = log_tail or "(no log lines could be read)"
    described = [facts.workload or {}] if kind == "Job" else facts.jobs
    conditions = [
        f"Job {job.get('name')}: {c.get('type')}: {c.get('reason')}: {c.get('message')}"
        for job in described
        for c in job.get("conditions") or []
        if c.get("status") == "True"
    ]
    if kind == "CronJob":
        runs = len(facts.jobs) or "some"
        return _escalate(
            root_cause=f"CronJob {name} keeps failing: its last {runs} run(s) failed. Last log lines:\n{tail}",
            category=Category.JOB_FAILURE,
            reason=f"the runs of CronJob {name} fail and {_no_known_good(history)}. Log tail:\n{tail}",
            evidence=evidence + conditions + [f"log tail: {tail}"],
            steps=[f"Read the log of the last failed Job of CronJob {name} in namespace {ns} and fix its job template"],
            confidence=0.75,
        )
    status = (facts.workload or {}).get("status") or {}
    return _escalate(
        root_cause=f"Job {name} failed ({status.get('failed', '?')} failed pods). Last log lines:\n{tail}",
        category=Category.JOB_FAILURE,
        reason=f"Job {name} failed; a failed batch run needs a human. Log tail:\n{tail}",
        evidence=evidence + conditions + [f"log tail: {tail}"],
        steps=[f"Read the full log of Job {name} in namespace {ns}, fix the cause, then re-run the Job"],
        confidence=0.8,
    )


def _probe(workload: ObjectRef, facts: Facts, history: History, fault: FaultKind, evidence: list[str]) -> Diagnosis:
    kind, name = workload.kind, workload.name
    which = "liveness" if fault is FaultKind.LIVENESS_FAILED else "readiness"
    said = _events(facts, "Unhealthy")[-1:] or ["no probe event was recorded"]
    return _escalate(
        root_cause=f"The {which} probe of {kind}/{name} fails: {said[0]}",
        category=Category.PROBE,
        reason=f"{which} probe failing: {said[0]}; "
        + (_no_known_good(history) if kind in k8s.REVISIONED_KINDS else "a bare Pod cannot be rolled back"),
        evidence=evidence + [f"probe: {said[0]}"],
        steps=[f"Fix the {which} probe of {kind}/{name} or the endpoint it checks"],
        confidence=0.75,
    )


def _no_revision_to_return_to(
    workload: ObjectRef, facts: Facts, history: History, fault: FaultKind, evidence: list[str]
) -> Diagnosis:
    kind, name, ns = workload.kind, workload.name, workload.namespace
    log_tail = _log_tail(facts)
    if fault is FaultKind.IMAGE_PULL:
        failing = sorted(_failing_images(facts) or (_images(history.current) if history.current else set()))
        messages = [m for m in _state_messages(facts) if any(r in m for r in k8s.IMAGE_PULL_REASONS)]
        why = _no_known_good(history) if kind in k8s.REVISIONED_KINDS else f"{kind}/{name} keeps no revisions"
        return _escalate(
            root_cause=f"Image {', '.join(failing) or '?'} of {kind}/{name} cannot be pulled, and {why}.",
            category=Category.BAD_IMAGE,
            reason=f"the image cannot be pulled and {why}",
            evidence=evidence + messages[:2],
            steps=["Fix the image reference or the registry credentials of the workload"],
        )
    tail = log_tail or "(no log lines could be read)"
    what = "init container fails" if fault is FaultKind.INIT_CONTAINER else "is crash looping"
    why = _no_known_good(history) if kind in k8s.REVISIONED_KINDS else f"a bare {kind} keeps no revisions"
    return _escalate(
        root_cause=f"{kind}/{name} {what}, and {why}. Last log lines:\n{tail}",
        category=_crash_category(set(), log_tail),
        reason=f"{'init container failure' if fault is FaultKind.INIT_CONTAINER else 'crash loop'}: {why}; "
        "the program or its configuration must be fixed",
        evidence=evidence + _state_messages(facts)[:2] + [f"log tail: {tail}"],
        steps=[f"Read the log of {kind}/{name} in namespace {ns} and fix the program or its configuration"],
        confidence=0.7,
    )


# --- one turn per agent ---------------------------------------------------------------------------


def _call(tool: str, /, **args: Any) -> types.Part:
    return types.Part.from_function_call(name=tool, args=args)


def _text(text: str) -> types.Part:
    return types.Part.from_text(text=text)


def _parameters(tool: Any) -> set[str]:
    func = getattr(tool, "func", None)
    if func is None:
        return set()
    try:
        return set(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return set()


def history_call(tools: dict[str, Any], namespace: str, kind: str, name: str) -> types.Part | None:
    """The get_rollout_history call for this workload, in whichever signature the tool declares."""
    tool = tools.get("get_rollout_history")
    if tool is None or kind not in k8s.REVISIONED_KINDS:
        return None
    parameters = _parameters(tool)
    if {"kind", "name"} <= parameters:
        return _call("get_rollout_history", namespace=namespace, kind=kind, name=name)
    if "workload_kind" in parameters and "workload_name" in parameters:
        return _call("get_rollout_history", namespace=namespace, workload_kind=kind, workload_name=name)
    if "deployment" in parameters and "kind" in parameters:
        return _call("get_rollout_history", namespace=namespace, deployment=name, kind=kind)
    if kind == "Deployment":
        return _call("get_rollout_history", namespace=namespace, deployment=name)
    return None


def _crashed_container(pod: dict[str, Any]) -> tuple[str | None, bool] | None:
    """(container, previous) of a container whose log tells why it failed: an init container first."""
    for status in list(pod.get("initContainerStatuses") or []) + list(pod.get("containerStatuses") or []):
        reasons = _status_reasons(status)
        state, last = status.get("state") or {}, status.get("lastState") or {}
        if (
            reasons & k8s.FAILED_RUN_REASONS
            or state.get("exitCode") not in (None, 0)
            or last.get("exitCode") not in (None, 0)
        ):
            restarted = bool(status.get("restartCount")) and last.get("state") == "terminated"
            return str(status.get("name")), restarted
    return None


def diagnosis_turn(llm_request: LlmRequest, *, max_memory_factor: float) -> list[types.Part]:
    """Three rounds of reads (the workload; its focus pod and owners' events; the crash log), then the rules."""
    found = exchanges(llm_request)
    identity = incident_from_request(llm_request)
    if identity is None:
        diagnosis = _escalate(
            root_cause="The offline rules could not tell which workload the incident is about.",
            category=Category.UNKNOWN,
            reason="no workload named (expected 'Kind/name -n namespace')",
            evidence=[],
            steps=["Name the workload as Kind/name -n namespace"],
            confidence=0.0,
        )
        return [_call(SET_MODEL_RESPONSE, **diagnosis.model_dump(mode="json"))]
    incident = identity if isinstance(identity, Incident) else None
    workload = identity.workload if isinstance(identity, Incident) else identity
    ns, kind, name = workload.namespace, workload.kind, workload.name
    tools = dict(llm_request.tools_dict)

    def offered(calls: list[types.Part | None]) -> list[types.Part]:
        return [c for c in calls if c is not None and c.function_call and c.function_call.name in tools]

    described = _last(found, "describe", kind=kind, name=name)
    if described is None:
        calls: list[types.Part | None] = [_call("describe", namespace=ns, kind=kind, name=name)]
        if kind != "Pod":
            calls.append(_call("list_pods", namespace=ns, workload_kind=kind, workload_name=name))
            calls.append(_call("get_events", namespace=ns, kind=kind, name=name))
        calls.append(history_call(tools, ns, kind, name))
        calls.append(_call("get_config_refs", namespace=ns, kind=kind, name=name))
        return offered(calls)

    facts = Facts(workload=_data(described))
    facts.pods = list((_data(_last(found, "list_pods")) or {}).get("pods") or [])
    history = _data(_last(found, "get_rollout_history")) or {}
    facts.revisions = list(history.get("revisions") or [])
    facts.current_revision = history.get("current_revision")
    facts.rollback_target = history.get("rollback_target") if isinstance(history.get("rollback_target"), dict) else None
    facts.config = _data(_last(found, "get_config_refs"))

    focus = name if kind == "Pod" else k8s.focus_pod(facts.pods, incident)
    second = set(k8s.OWNED_KINDS) - {kind}
    read_second = any(
        (e.name in {"describe", "get_events"} and e.args.get("kind") in second)
        or (e.name == "get_events" and e.args.get("kind") == "Pod")
        for e in found
    )
    if not read_second:
        calls = []
        if focus is not None:
            if kind != "Pod":
                calls.append(_call("describe", namespace=ns, kind="Pod", name=focus))
            calls.append(_call("get_events", namespace=ns, kind="Pod", name=focus))
        current = read_history(facts).current or {}
        if kind == "Deployment" and current.get("replicaset"):  # FailedCreate is an event of the ReplicaSet
            calls.append(_call("get_events", namespace=ns, kind="ReplicaSet", name=str(current["replicaset"])))
        for job in _jobs_of(incident)[-MAX_JOBS_READ:]:
            calls.append(_call("describe", namespace=ns, kind="Job", name=job))
        row = next((p for p in facts.pods if p.get("name") == focus), {})
        if (
            focus is not None
            and kind != "Pod"
            and (row.get("restarts") or kind == "Job" or row.get("phase") == "Failed")
        ):
            calls.append(
                _call("get_pod_logs", namespace=ns, pod=focus, previous=bool(row.get("restarts")), tail_lines=50)
            )
        if calls and offered(calls):
            return offered(calls)
    if kind == "Pod":
        facts.pod = facts.workload
    elif focus is not None:
        facts.pod = _data(_last(found, "describe", kind="Pod", name=focus))
    crashed = _crashed_container(facts.pod) if facts.pod else None
    if kind == "Pod" and crashed is None and facts.pod:
        crashed = (None, False)  # a bare Pod is escalated with whatever its log says
    if focus is not None and crashed is not None and _last(found, "get_pod_logs") is None:
        container, previous = crashed
        calls = [_call("get_pod_logs", namespace=ns, pod=focus, container=container, previous=previous, tail_lines=50)]
        if offered(calls):
            return offered(calls)
    for exchange in found:
        data = _data(exchange) or {}
        if exchange.name == "get_events":
            facts.events.extend(data.get("events") or [])
        elif exchange.name == "get_pod_logs" and data.get("log"):
            facts.logs.append(str(data["log"]))
        elif exchange.name == "describe" and exchange.args.get("kind") == "Job" and kind != "Job" and data:
            facts.jobs.append(data)
    facts.logs.reverse()  # the newest read (a named container's previous run) first
    diagnosis = analyze(incident, workload, facts, max_memory_factor=max_memory_factor)
    return [_call(SET_MODEL_RESPONSE, **diagnosis.model_dump(mode="json"))]


MAX_JOBS_READ = 3


def _jobs_of(incident: Incident | None) -> list[str]:
    return [ref.name for ref in (incident.affected if incident else []) if ref.kind == "Job"]


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
        if isinstance(item, dict) and item.get("tool") in TOOL_ACTIONS and isinstance(item.get("args"), dict):
            calls.append((str(item["tool"]), dict(item["args"])))
    return calls


def _applied(tool: str, args: dict[str, Any]) -> ProposedAction | None:
    """The action a write call applies; None for a call that is not a valid one."""
    try:
        return parse_call(tool, args)
    except (KeyError, ValidationError):
        return None


def remediation_turn(llm_request: LlmRequest) -> list[types.Part]:
    found = exchanges(llm_request)
    done = [_applied(e.name, e.args) for e in found if e.answered]
    for tool, args in approved_calls(llm_request):
        if _applied(tool, args) not in done and tool in llm_request.tools_dict:
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
        if tools & set(TOOL_ACTIONS):
            return remediation_turn(llm_request)
        if DIAGNOSIS in tools:
            return coordinator_turn(llm_request)
        return [_text("The offline rules only run inside the AMOS agent graph; nothing to do here.")]
