"""The root agent `adk web agents` serves: the production graph, with lazy cluster access.

Importing builds no Kubernetes client and opens no connection. The first tool call
loads the kubeconfig (settings / KUBECONFIG, else in-cluster, else ~/.kube/config);
when that fails every tool answers with a clear error instead of raising. Without an
incident record, the incident is what the user types; write tools are scoped to the
workload named there (`Deployment/web -n shop`) and pass the same policy guard.
"""

from __future__ import annotations

import inspect
import threading
import typing
from collections.abc import Callable
from typing import Any

from google.adk.agents import LlmAgent
from google.adk.models import BaseLlm
from google.adk.tools.tool_context import ToolContext

from agents.context import IncidentContext
from agents.graph import build_graph
from agents.guardrails import WRITE_TOOL_ACTIONS, Guardrails
from agents.instructions import context_from_state
from agents.models import build_model
from agents.offline import workload_in_text
from core.config import Settings, load_settings
from core.models import ObjectRef
from core.redaction import Redactor

READ_TOOL_NAMES = (
    "get_pod_logs",
    "get_events",
    "describe",
    "get_owner_chain",
    "get_rollout_history",
    "get_config_refs",
    "list_pods",
)
WRITE_TOOL_NAMES = tuple(WRITE_TOOL_ACTIONS)

Resolver = Callable[[ToolContext], tuple[Any, str | None]]


def _error(text: str) -> dict[str, Any]:
    return {"ok": False, "data": None, "error": text, "truncated": False}


class LazyCluster:
    """Builds `ClusterAccess` on first use; a failure is reported, and retried on the next call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._access: Any = None
        self._lock = threading.Lock()

    def access(self) -> tuple[Any, str | None]:
        with self._lock:
            if self._access is None:
                try:
                    self._access = self._connect()
                except Exception as error:  # noqa: BLE001 - no kubeconfig, bad file, no in-cluster token: say so
                    where = self.settings.kubeconfig or "KUBECONFIG / in-cluster / ~/.kube/config"
                    return None, f"cannot reach the cluster (kubeconfig {where}): {type(error).__name__}: {error}"
            return self._access, None

    def _connect(self) -> Any:
        from kubernetes import client, config

        from tools.cluster import ClusterAccess

        if self.settings.kubeconfig is not None:
            api_client = config.new_client_from_config(config_file=str(self.settings.kubeconfig))  # type: ignore[no-untyped-call]
        else:
            try:
                config.load_incluster_config()  # type: ignore[no-untyped-call]
                api_client = client.ApiClient()
            except config.ConfigException:
                api_client = config.new_client_from_config()  # type: ignore[no-untyped-call]
        return ClusterAccess(api_client, self.settings, Redactor())


def lazy_tool(cls: type, method_name: str, resolve: Resolver) -> Callable[..., dict[str, Any]]:
    """A function with `cls.method_name`'s parameters and docstring that resolves its target per call."""
    method = getattr(cls, method_name)
    hints = typing.get_type_hints(method)
    signature = inspect.signature(method)
    params = [
        parameter.replace(annotation=hints.get(parameter.name, parameter.annotation))
        for parameter in list(signature.parameters.values())[1:]  # without self
    ]
    params.append(inspect.Parameter("tool_context", inspect.Parameter.KEYWORD_ONLY, annotation=ToolContext))

    def call(**kwargs: Any) -> dict[str, Any]:
        tool_context = kwargs.pop("tool_context")
        target, error = resolve(tool_context)
        if target is None:
            return _error(error or "tool unavailable")
        result: dict[str, Any] = getattr(target, method_name)(**kwargs)
        return result

    call.__name__ = call.__qualname__ = method_name
    call.__doc__ = method.__doc__
    call.__signature__ = signature.replace(parameters=params, return_annotation=dict[str, Any])  # type: ignore[attr-defined]
    call.__annotations__ = {p.name: p.annotation for p in params} | {"return": dict[str, Any]}
    return call


def _session_workload(tool_context: ToolContext) -> ObjectRef | None:
    context: IncidentContext | None = context_from_state(tool_context.state)
    if context is not None:
        return context.incident.workload
    for event in tool_context.session.events:
        if event.author == "user" and event.content:
            text = " ".join(part.text or "" for part in event.content.parts or [])
            workload = workload_in_text(text)
            if workload is not None:
                return workload
    return None


class WebTools:
    """Read and write tools for `adk web`, one `WriteTools` (guard, recorder) per ADK session."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cluster = LazyCluster(settings)
        self._writers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _reader(self, tool_context: ToolContext) -> tuple[Any, str | None]:
        from tools.read import ReadTools

        access, error = self.cluster.access()
        return (ReadTools(access), None) if access is not None else (None, error)

    def _writer(self, tool_context: ToolContext) -> tuple[Any, str | None]:
        from tools.policy import IncidentScope, PolicyGuard
        from tools.write import ActionRecorder, WriteTools

        access, error = self.cluster.access()
        if access is None:
            return None, error
        workload = _session_workload(tool_context)
        if workload is None:
            return None, "refused: no incident scope; name the workload in your message as Kind/name -n namespace"
        key = f"{tool_context.session.id}:{workload.kind}/{workload.namespace}/{workload.name}"
        with self._lock:
            writer = self._writers.get(key)
            if writer is None:
                guard = PolicyGuard(self.settings, IncidentScope.of(workload))
                writer = self._writers[key] = WriteTools(access, guard, ActionRecorder())
        return writer, None

    def read_functions(self) -> list[Callable[..., dict[str, Any]]]:
        from tools.read import ReadTools

        return [lazy_tool(ReadTools, name, self._reader) for name in READ_TOOL_NAMES]

    def write_functions(self) -> list[Callable[..., dict[str, Any]]]:
        from tools.write import WriteTools

        return [lazy_tool(WriteTools, name, self._writer) for name in WRITE_TOOL_NAMES]


def build_root_agent(settings: Settings | None = None, model: BaseLlm | None = None) -> LlmAgent:
    """The coordinator for `adk web`: the offline model when no key is configured."""
    settings = settings or load_settings()
    tools = WebTools(settings)
    return build_graph(
        model=model or build_model(settings),
        settings=settings,
        read_tools=tools.read_functions(),
        write_tools=None if settings.dry_run else tools.write_functions(),
        guardrails=Guardrails(settings),
    )
