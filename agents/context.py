"""What the agents are told about an incident before they ask anything: `IncidentContext`.

Gathered with the read tools, so everything read from the cluster is already bounded and
redacted by them (the monitors' evidence and the history pass the tools' redactor too);
this module only picks what matters for the fault (the failing pod, its last crash log,
its events) and bounds the total again. A read that fails leaves a note in `gaps`
instead of failing the incident.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Protocol

import yaml
from pydantic import BaseModel, Field

from core import k8s
from core.models import Evidence, FaultKind, Incident
from core.redaction import clip_text

MAX_LOG_CHARS = 3000  # per excerpt
MAX_LOG_EXCERPTS = 2
MAX_EVENTS = 15
MAX_EVENT_CHARS = 300
MAX_SPEC_CHARS = 4000
MAX_STATUS_CHARS = 2500
MAX_PODS = 10
MAX_REVISIONS = 6
MAX_HISTORY_ITEMS = 8
MAX_HISTORY_CHARS = 600
MAX_CONTEXT_CHARS = 24_000  # the whole context as JSON; logs are cut further past this
LOG_TAIL_LINES = 80

MAX_JOBS = 3  # a CronJob's last failed runs

_POD_FAULTS = {
    FaultKind.CRASH_LOOP,
    FaultKind.IMAGE_PULL,
    FaultKind.OOM_KILLED,
    FaultKind.CONTAINER_CONFIG,
    FaultKind.UNSCHEDULABLE,
    FaultKind.JOB_FAILED,
    FaultKind.INIT_CONTAINER,
    FaultKind.LIVENESS_FAILED,
    FaultKind.NOT_READY,
}
_NO_LOG_FAULTS = {FaultKind.IMAGE_PULL, FaultKind.CONTAINER_CONFIG, FaultKind.UNSCHEDULABLE, FaultKind.FAILED_CREATE}


class ReadToolsLike(Protocol):
    """The read tools `build_context` uses (`tools.read.ReadTools`); each returns a ToolResult dict."""

    def get_pod_logs(
        self, namespace: str, pod: str, container: str | None = None, previous: bool = False, tail_lines: int = 100
    ) -> dict[str, Any]: ...

    def get_events(self, namespace: str, kind: str, name: str) -> dict[str, Any]: ...

    def describe(self, namespace: str, kind: str, name: str) -> dict[str, Any]: ...

    def get_rollout_history(self, namespace: str, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def get_config_refs(self, namespace: str, kind: str, name: str) -> dict[str, Any]: ...

    def list_pods(self, namespace: str, workload_kind: str, workload_name: str) -> dict[str, Any]: ...


class LogExcerpt(BaseModel):
    pod: str
    container: str | None = None
    previous: bool = False
    text: str
    truncated: bool = False


class IncidentContext(BaseModel):
    """The incident as the agents first see it; every field is bounded."""

    incident: Incident
    fault: str
    evidence: list[str] = Field(default_factory=list)
    workload_status: str = ""  # YAML: replicas, conditions, revision
    spec_excerpt: str = ""  # YAML: the containers of the pod template (image, args, env, resources, probes)
    pods: list[dict[str, Any]] = Field(default_factory=list)
    focus_pod: str | None = None  # the failing pod the logs and pod status come from
    pod_status: str = ""  # YAML: container states of the focus pod
    logs: list[LogExcerpt] = Field(default_factory=list)
    events: list[str] = Field(default_factory=list)
    rollout_history: list[dict[str, Any]] = Field(default_factory=list)
    current_revision: int | None = None
    rollback_target: dict[str, Any] | None = None  # get_rollout_history's choice: {revision, source, reason}
    config_refs: list[dict[str, Any]] = Field(default_factory=list)
    missing_config: list[str] = Field(default_factory=list)
    failed_jobs: list[dict[str, Any]] = Field(default_factory=list)  # a CronJob's last failed runs
    history: list[str] = Field(default_factory=list)  # earlier attempts on this incident, oldest first
    gaps: list[str] = Field(default_factory=list)  # reads that failed, with the tool's error
    truncated: bool = False


def describe_evidence(evidence: Evidence) -> str:
    parts = [evidence.reason]
    if evidence.message:
        parts.append(evidence.message)
    details = []
    if evidence.container:
        details.append(f"container {evidence.container}")
    if evidence.exit_code is not None:
        details.append(f"exit code {evidence.exit_code}")
    if evidence.restart_count is not None:
        details.append(f"{evidence.restart_count} restarts")
    text = ": ".join(parts)
    return f"{text} ({', '.join(details)})" if details else text


def _yaml(value: Any, limit: int) -> tuple[str, bool]:
    if value in (None, {}, []):
        return "", False
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, allow_unicode=True, width=120).rstrip("\n")
    return clip_text(text, limit, keep="start"), len(text) > limit


def format_event(event: dict[str, Any]) -> str:
    count = event.get("count") or 1
    times = f" (x{count})" if count and count > 1 else ""
    source = f" [{event['source']}]" if event.get("source") else ""
    message = str(event.get("message") or "")
    return f"{event.get('type') or 'Normal'} {event.get('reason') or ''}{times}: {message}{source}"


def revision_summary(revision: dict[str, Any]) -> dict[str, Any]:
    """A rollout-history entry with what tells revisions apart: images, command, args, env names."""
    summary: dict[str, Any] = {
        "revision": revision.get("revision"),
        "current": bool(revision.get("current")),
        "ready": f"{revision.get('ready', 0)}/{revision.get('replicas', 0)}",
    }
    for key in ("change_cause", *_REVISION_MARKS):
        if revision.get(key) not in (None, "", []):
            summary[key] = revision[key]
    containers = []
    for container in list(revision.get("containers") or []) + list(revision.get("initContainers") or []):
        shown = {key: container[key] for key in _REVISION_FIELDS if key in container}
        containers.append(shown)
    summary["containers"] = containers
    return summary


# What get_rollout_history says about a revision (known-good / known-bad, how it knows, what it changed).
_REVISION_MARKS = ("known", "health", "verdict", "mark", "source", "changed", "changes", "known_good", "known_bad")
_REVISION_FIELDS = ("name", "image", "command", "args", "env_names", "envFrom", "resources")


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """Init containers first: while one fails, the app containers only wait (`PodInitializing`)."""
    return list(pod.get("initContainerStatuses") or []) + list(pod.get("containerStatuses") or [])


def _failing(status: dict[str, Any]) -> bool:
    state = status.get("state") or {}
    waiting = state.get("reason") if state.get("state") == "waiting" else None
    exit_code = state.get("exitCode") if state.get("state") == "terminated" else 0
    return bool(status.get("restartCount")) or waiting not in (None, "PodInitializing") or exit_code not in (0, None)


def _log_container(statuses: list[dict[str, Any]], incident: Incident) -> tuple[str | None, bool]:
    """(container, previous) worth reading: the one the evidence names, or the first failing one."""
    named = next((e.container for e in incident.evidence if e.container), None)
    chosen: dict[str, Any] | None = None
    for status in statuses:
        if status.get("name") == named:
            chosen = status
            break
    if chosen is None:
        chosen = next((s for s in statuses if _failing(s)), None) or next(
            (s for s in statuses if not s.get("ready") and (s.get("state") or {}).get("reason") != "PodInitializing"),
            None,
        )
    if chosen is None:
        return named, False
    last = chosen.get("lastState") or {}
    previous = bool(chosen.get("restartCount")) and last.get("state") == "terminated"
    return str(chosen.get("name")), previous


_WORKLOAD_STATUS_FIELDS = (
    "revision",
    "replicas",
    "status",
    "conditions",
    "completions",
    "backoffLimit",
    "updateStrategy",
    "schedule",
    "suspend",
)
_SCHEDULING_FIELDS = ("nodeSelector", "affinity", "tolerations")


def _history_arguments(read_tools: ReadToolsLike, namespace: str, kind: str, name: str) -> dict[str, Any]:
    """get_rollout_history's arguments in the signature the tool has (`deployment=` before it knew other kinds)."""
    try:
        parameters = set(inspect.signature(read_tools.get_rollout_history).parameters)
    except (TypeError, ValueError):
        parameters = set()
    if "deployment" in parameters:
        return {"namespace": namespace, "deployment": name} | ({"kind": kind} if "kind" in parameters else {})
    return {"namespace": namespace, "kind": kind, "name": name}


def build_context(incident: Incident, read_tools: ReadToolsLike, history: list[str]) -> IncidentContext:
    """Read what a diagnosis needs first, with the read tools; never raises for a failed read."""
    workload = incident.workload
    ns = workload.namespace
    gaps: list[str] = []
    truncated = False

    def read(call: Callable[..., dict[str, Any]], **kwargs: Any) -> Any:
        nonlocal truncated
        result = call(**kwargs)
        if not result.get("ok"):
            gaps.append(
                f"{getattr(call, '__name__', 'read')}({', '.join(f'{k}={v}' for k, v in kwargs.items())}): "
                f"{result.get('error')}"
            )
            return None
        truncated = truncated or bool(result.get("truncated"))
        return result.get("data")

    context = IncidentContext(
        incident=incident,
        fault=incident.title,
        evidence=[describe_evidence(e) for e in incident.evidence[:10]],
        history=[clip_text(item, MAX_HISTORY_CHARS, keep="start") for item in history[-MAX_HISTORY_ITEMS:]],
    )

    described = read(read_tools.describe, namespace=ns, kind=workload.kind, name=workload.name)
    pod_rows: list[dict[str, Any]] = []
    if workload.kind == "Pod":
        pod_rows = [{"name": workload.name}]
    if isinstance(described, dict):
        spec = described if workload.kind == "Pod" else dict(described.get("template") or {})
        if workload.kind == "Pod":
            status = {key: described.get(key) for key in ("phase", "reason", "message", "node", "conditions")}
        else:
            status = {key: described[key] for key in _WORKLOAD_STATUS_FIELDS if key in described}
        shown = {key: spec[key] for key in ("initContainers", "containers", *_SCHEDULING_FIELDS) if spec.get(key)}
        context.spec_excerpt, cut_spec = _yaml(shown, MAX_SPEC_CHARS)
        context.workload_status, cut_status = _yaml(status, MAX_STATUS_CHARS)
        truncated = truncated or cut_spec or cut_status
        context.current_revision = described.get("revision")

    if workload.kind != "Pod":
        data = read(read_tools.list_pods, namespace=ns, workload_kind=workload.kind, workload_name=workload.name)
        pod_rows = list((data or {}).get("pods") or [])
        if len(pod_rows) > MAX_PODS:
            pod_rows, truncated = pod_rows[-MAX_PODS:], True
        context.pods = pod_rows

    events: list[dict[str, Any]] = []
    if workload.kind in k8s.REVISIONED_KINDS:
        rollout = read(
            read_tools.get_rollout_history, **_history_arguments(read_tools, ns, workload.kind, workload.name)
        )
        if isinstance(rollout, dict):
            revisions = [revision_summary(r) for r in rollout.get("revisions") or []]
            if len(revisions) > MAX_REVISIONS:
                revisions, truncated = revisions[-MAX_REVISIONS:], True
            context.rollout_history = revisions
            context.current_revision = rollout.get("current_revision", context.current_revision)
            if isinstance(rollout.get("rollback_target"), dict):
                context.rollback_target = rollout["rollback_target"]
            current: dict[str, Any] = next((r for r in rollout.get("revisions") or [] if r.get("current")), {})
            if workload.kind == "Deployment" and current.get("replicaset"):
                # A ReplicaSet that cannot create pods (quota, LimitRange, admission) says so in its own events.
                rs_events = read(read_tools.get_events, namespace=ns, kind="ReplicaSet", name=current["replicaset"])
                events.extend((rs_events or {}).get("events") or [])

    if workload.kind == "CronJob":
        for job in [ref.name for ref in incident.affected if ref.kind == "Job"][-MAX_JOBS:]:
            data = read(read_tools.describe, namespace=ns, kind="Job", name=job)
            if isinstance(data, dict):
                context.failed_jobs.append(
                    {key: data[key] for key in ("name", "created", "status", "conditions") if key in data}
                )

    focus = k8s.focus_pod(pod_rows, incident) if incident.kind in _POD_FAULTS or pod_rows else None
    context.focus_pod = focus
    if focus is not None:
        pod = described if workload.kind == "Pod" else read(read_tools.describe, namespace=ns, kind="Pod", name=focus)
        if isinstance(pod, dict):
            statuses = _container_statuses(pod)
            context.pod_status, cut = _yaml(
                {
                    "phase": pod.get("phase"),
                    "reason": pod.get("reason"),
                    "containerStatuses": statuses,
                    "conditions": [c for c in pod.get("conditions") or [] if c.get("status") != "True"],
                },
                MAX_STATUS_CHARS,
            )
            truncated = truncated or cut
            container, previous = _log_container(statuses, incident)
            if incident.kind not in _NO_LOG_FAULTS:
                reads = [previous, False] if previous else [False]
                for prev in reads[:MAX_LOG_EXCERPTS]:
                    log = read(
                        read_tools.get_pod_logs,
                        namespace=ns,
                        pod=focus,
                        container=container,
                        previous=prev,
                        tail_lines=LOG_TAIL_LINES,
                    )
                    text = str(log.get("log") or "") if isinstance(log, dict) else ""
                    if text.strip():
                        context.logs.append(
                            LogExcerpt(
                                pod=focus,
                                container=log.get("container"),
                                previous=prev,
                                text=clip_text(text, MAX_LOG_CHARS),
                                truncated=len(text) > MAX_LOG_CHARS,
                            )
                        )
        pod_events = read(read_tools.get_events, namespace=ns, kind="Pod", name=focus)
        events.extend((pod_events or {}).get("events") or [])
    if workload.kind != "Pod":
        workload_events = read(read_tools.get_events, namespace=ns, kind=workload.kind, name=workload.name)
        events.extend((workload_events or {}).get("events") or [])
    events.sort(key=lambda event: str(event.get("last_seen") or ""))
    if len(events) > MAX_EVENTS:
        events, truncated = events[-MAX_EVENTS:], True
    context.events = [clip_text(format_event(event), MAX_EVENT_CHARS, keep="start") for event in events]

    refs = read(read_tools.get_config_refs, namespace=ns, kind=workload.kind, name=workload.name)
    if isinstance(refs, dict):
        context.config_refs = list(refs.get("refs") or [])
        context.missing_config = list(refs.get("missing") or [])

    context.gaps = gaps
    context.truncated = truncated
    # Tool results are redacted already; the monitors' evidence and the history are not tool output.
    redactor = getattr(getattr(read_tools, "access", None), "redactor", None)
    if redactor is not None:
        context = redactor.redact(context)
    return shrink(context)


def shrink(context: IncidentContext, limit: int = MAX_CONTEXT_CHARS) -> IncidentContext:
    """Cut logs (then events) until the context's JSON fits `limit` characters."""
    while len(context.model_dump_json()) > limit:
        longest = max(context.logs, key=lambda log: len(log.text), default=None)
        if longest is not None and len(longest.text) > 400:
            longest.text = clip_text(longest.text, len(longest.text) // 2)
            longest.truncated = True
        elif context.events:
            context.events = context.events[len(context.events) // 2 + 1 :] if len(context.events) > 1 else []
        elif context.rollout_history:
            context.rollout_history = context.rollout_history[1:]
        else:
            context.spec_excerpt = clip_text(
                context.spec_excerpt, max(200, len(context.spec_excerpt) // 2), keep="start"
            )
            if len(context.spec_excerpt) <= 200:
                break
        context.truncated = True
    return context
