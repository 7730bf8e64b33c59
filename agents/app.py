"""The root agent `adk web agents` serves: the production graph, diagnose-only, with lazy cluster access.

`adk web` runs outside the safety loop (no guard rails, ledger, snapshot, journal or
verification), so it never gets a write tool. Its reads are scoped to the incident the user
names in the session's first message (`Deployment/web -n shop`): a session about `shop`
cannot read `payments`, `kube-system` or AMOS's own namespace. With writes enabled
(`AMOS_ADK_WEB_WRITES=true`, `Settings.adk_web_writes`), the remediation step does not run a model
at all: it takes the diagnosis's typed proposed actions and hands them to a `SubmitFix` hook,
which the orchestrator provides; without one, it refuses. Given a `ProposalDesk`, the coordinator
also lists the proposals waiting in that namespace and, with writes only, decides on one the user
names (`agents.web_proposals`).

Importing builds no Kubernetes client and opens no connection. The first tool call loads
the kubeconfig (settings / KUBECONFIG, else in-cluster, else ~/.kube/config); when that
fails every tool answers with a clear error instead of raising.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import typing
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from google.adk.agents import LlmAgent
from google.adk.agents.callback_context import CallbackContext
from google.adk.agents.readonly_context import ReadonlyContext
from google.adk.models import BaseLlm
from google.adk.tools.tool_context import ToolContext
from google.genai import types

from agents.context import IncidentContext
from agents.graph import build_graph
from agents.guardrails import REMEDIATION, Guardrails, approved_actions, session_diagnosis
from agents.instructions import context_from_state, render, untrusted
from agents.models import build_model
from agents.offline import OfflineLlm, workload_in_text
from agents.offline_proposals import ProposalRulesLlm
from agents.web_proposals import ProposalDesk, ProposalTools
from core.actions import ProposedAction
from core.config import Settings, load_settings
from core.models import ObjectRef
from core.redaction import Redactor
from monitors.scope import namespace_in_scope

DIAGNOSE_ONLY = "adk web is diagnose-only (set AMOS_ADK_WEB_WRITES=true to hand a fix to the orchestrator)"
WRITES_DISABLED = "writes disabled"


class SubmitFix(Protocol):
    """Hands the typed actions a diagnosis proposed for one workload to the orchestrator's path; says what happened."""

    def __call__(self, incident_ref: ObjectRef, actions: Sequence[ProposedAction]) -> str: ...


def refuse_fix(incident_ref: ObjectRef, actions: Sequence[ProposedAction]) -> str:
    """The hook until the orchestrator is connected: nothing is applied."""
    return f"{WRITES_DISABLED}: no orchestrator is connected to adk web; nothing was applied to {incident_ref}"


READ_TOOL_NAMES = (
    "get_pod_logs",
    "get_events",
    "describe",
    "get_owner_chain",
    "get_rollout_history",
    "get_config_refs",
    "list_pods",
)
Resolver = Callable[[ToolContext], tuple[Any, str | None]]


def _error(text: str) -> dict[str, Any]:
    return {"ok": False, "data": None, "error": text, "truncated": False}


class LazyCluster:
    """Connects on first use; a failure is reported, and retried on the next call.

    One redactor for the app, viewed per namespace: a Secret read in `shop` teaches it
    values that are looked for in `shop`'s text only.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redactor = Redactor()
        self._api_client: Any = None
        self._lock = threading.Lock()

    def connect(self) -> str | None:
        """Connect once; on failure, why (and try again on the next call)."""
        with self._lock:
            if self._api_client is None:
                try:
                    self._api_client = self._connect()
                except Exception as error:  # noqa: BLE001 - no kubeconfig, bad file, no in-cluster token: say so
                    where = self.settings.kubeconfig or "KUBECONFIG / in-cluster / ~/.kube/config"
                    return f"cannot reach the cluster (kubeconfig {where}): {type(error).__name__}: {error}"
            return None

    def access(self, namespace: str) -> Any:
        """`ClusterAccess` for one namespace's reads (after `connect` succeeded)."""
        from tools.cluster import ClusterAccess

        return ClusterAccess(self._api_client, self.settings, self.redactor.scope(namespace))

    def _connect(self) -> Any:
        from kubernetes import client, config

        if self.settings.kubeconfig is not None:
            return config.new_client_from_config(config_file=str(self.settings.kubeconfig))  # type: ignore[no-untyped-call]
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return client.ApiClient()
        except config.ConfigException:
            return config.new_client_from_config()  # type: ignore[no-untyped-call]


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


def session_workload(context: CallbackContext) -> ObjectRef | None:
    """The session's incident: the preloaded record, else the first workload the user named (later ones do not move it)."""
    incident: IncidentContext | None = context_from_state(context.state)
    if incident is not None:
        return incident.incident.workload
    for event in context.session.events:
        if event.author == "user" and event.content:
            text = " ".join(part.text or "" for part in event.content.parts or [])
            workload = workload_in_text(text)
            if workload is not None:
                return workload
    return None


class WebTools:
    """The read tools for `adk web`, each call scoped to the session's incident."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cluster = LazyCluster(settings)

    def scope(self, context: CallbackContext) -> tuple[Any, str | None]:
        """The session's `IncidentScope`, or why there is none (no workload named, a namespace AMOS leaves alone)."""
        from tools.policy import IncidentScope

        workload = session_workload(context)
        if workload is None:
            return None, "refused: no incident scope; name the workload in your message as Kind/name -n namespace"
        if not namespace_in_scope(workload.namespace, self.settings) or workload.namespace == (
            self.settings.store_namespace
        ):
            return None, f"refused: namespace {workload.namespace} is outside what AMOS watches"
        return IncidentScope.of(workload), None

    def _reader(self, tool_context: ToolContext) -> tuple[Any, str | None]:
        from orchestrator.knowngood_store import KnownGoodStore
        from tools.read import ReadTools

        error = self.cluster.connect()
        if error is not None:
            return None, error
        scope, error = self.scope(tool_context)
        if scope is None:
            return None, error
        access = self.cluster.access(scope.namespace)
        return ReadTools(access, scope, known_good=KnownGoodStore(access)), None  # the same history the loop reads

    def read_functions(self) -> list[Callable[..., dict[str, Any]]]:
        from tools.read import ReadTools

        return [lazy_tool(ReadTools, name, self._reader) for name in READ_TOOL_NAMES]


class FixHandoff:
    """Remediation in `adk web`: no model, no write tool; the diagnosis's typed actions go to the `SubmitFix` hook.

    Used as the remediation agent's `before_agent_callback`: the text it returns is the
    agent's whole answer, so the agent's model never runs.
    """

    def __init__(self, tools: WebTools, submit_fix: SubmitFix) -> None:
        self.tools = tools
        self.submit_fix = submit_fix

    async def __call__(self, callback_context: CallbackContext) -> types.Content:
        scope, error = self.tools.scope(callback_context)
        actions = approved_actions(session_diagnosis(callback_context.state))
        if scope is None:
            text = error or "refused: no incident scope"
        elif not actions:
            text = "nothing submitted: the diagnosis proposes no action, or escalates"
        else:
            # The fix is applied and verified (minutes): off the event loop that serves every session.
            try:
                answer = await asyncio.to_thread(self.submit_fix, scope.workload, actions)
            except Exception as error:  # noqa: BLE001 - no cluster, no state namespace: say so, never crash the run
                answer = f"the fix could not be handed to the orchestrator: {type(error).__name__}: {str(error)[:300]}"
            text = untrusted(self.tools.cluster.redactor.scope(scope.namespace).redact_text(answer))
        return types.Content(role="model", parts=[types.Part.from_text(text=text)])


def build_root_agent(
    settings: Settings | None = None,
    model: BaseLlm | None = None,
    *,
    writes: bool | None = None,
    submit_fix: SubmitFix | None = None,
    proposals: ProposalDesk | None = None,
) -> LlmAgent:
    """The coordinator for `adk web`: the offline model when no key is configured.

    Diagnose-only unless `writes` (default: `settings.adk_web_writes`, `AMOS_ADK_WEB_WRITES`);
    with writes, remediation hands the proposed actions to `submit_fix` (default: refuse).
    With `proposals`, the coordinator lists pending proposals; deciding on one needs writes too.
    """
    settings = settings or load_settings()
    tools = WebTools(settings)
    writes = (settings.adk_web_writes if writes is None else writes) and not settings.dry_run
    model = model or build_model(settings)
    proposal_tools: list[Callable[..., Any]] = []
    if proposals is not None:
        proposal_tools = ProposalTools(proposals, tools.scope, tools.cluster.redactor.scope).functions(decide=writes)
        if isinstance(model, OfflineLlm):
            model = ProposalRulesLlm(max_memory_factor=model.max_memory_factor)  # the same rules, and these tools
    root = build_graph(
        model=model,
        settings=settings,
        read_tools=tools.read_functions(),
        write_tools=[] if writes else None,  # a remediation step without tools: FixHandoff answers for it
        guardrails=Guardrails(settings),
        remediation_off_reason="dry-run mode: AMOS only recommends" if settings.dry_run else DIAGNOSE_ONLY,
        coordinator_tools=proposal_tools,
    )
    if writes:
        remediation = next(agent for agent in root.sub_agents if agent.name == REMEDIATION)
        remediation.before_agent_callback = FixHandoff(tools, submit_fix or refuse_fix)
    if proposal_tools:
        root.instruction = with_proposals(root.instruction, decide=writes)
    return root


def with_proposals(instruction: Any, *, decide: bool) -> Callable[[ReadonlyContext], str]:
    """The coordinator's instruction and how to use the proposal tools it was given."""
    section = render("adk_web_proposals.j2", decide=decide)

    def provide(context: ReadonlyContext) -> str:
        return str(instruction(context)) + section

    return provide
