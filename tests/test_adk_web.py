"""`adk web agents` is diagnose-only and scoped to the incident it is asked about, tested through ADK's HTTP API.

Before, asked to diagnose a broken Deployment, the coordinator also rolled it back (no snapshot,
journal, verification, Event or mail), and its reads went to any namespace. Now it has no write
tool at all; with `AMOS_ADK_WEB_WRITES=true` the diagnosis's typed actions are handed to a
`submit_fix` hook (the orchestrator's path), never applied from `adk web`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient
from google.adk.agents import BaseAgent, LlmAgent
from google.adk.apps.app import App
from google.adk.cli.fast_api import get_fast_api_app
from google.adk.cli.utils.base_agent_loader import BaseAgentLoader
from kubernetes import client

from agents.app import WRITES_DISABLED, WebTools, build_root_agent
from agents.testing import ScriptedLlm, call, text
from core.actions import TOOL_ACTIONS, ProposedAction, SetResources
from core.config import Settings
from core.models import ObjectRef
from lab import workloads

AGENTS_DIR = Path(__file__).resolve().parent.parent / "agents"
IMAGE = "registry.local/shop/web:v1.4.2"
MODEL_KEYS = ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "AMOS_MODEL_PROVIDER")


# --- the graph, without a cluster -----------------------------------------------------------------


def tool_names(agent: BaseAgent) -> set[str]:
    names = {getattr(tool, "__name__", getattr(tool, "name", "")) for tool in getattr(agent, "tools", [])}
    for sub_agent in agent.sub_agents:
        names |= tool_names(sub_agent)
    return names


def test_the_adk_web_graph_has_no_write_tool_by_default_or_with_writes() -> None:
    settings = Settings(model_provider="offline")

    for writes in (False, True):
        root = build_root_agent(settings, writes=writes)
        assert not tool_names(root) & set(TOOL_ACTIONS), writes
    assert [agent.name for agent in build_root_agent(settings).sub_agents] == ["diagnosis"]


@pytest.mark.parametrize(("value", "writes"), [(None, False), ("false", False), ("true", True)])
def test_the_adk_web_entry_reads_amos_adk_web_writes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, writes: bool
) -> None:
    for name in MODEL_KEYS:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "config.yaml"
    config.write_text("model_provider: offline\n")
    monkeypatch.setenv("AMOS_CONFIG", str(config))
    if value is None:
        monkeypatch.delenv("AMOS_ADK_WEB_WRITES", raising=False)
    else:
        monkeypatch.setenv("AMOS_ADK_WEB_WRITES", value)
    for name in [module for module in sys.modules if module == "agents.amos" or module.startswith("agents.amos.")]:
        monkeypatch.delitem(sys.modules, name)

    agent = importlib.import_module("agents.amos.agent")

    expected = ["diagnosis", "remediation"] if writes else ["diagnosis"]
    assert [sub.name for sub in agent.root_agent.sub_agents] == expected
    assert not tool_names(agent.root_agent) & set(TOOL_ACTIONS)


def session_about(*messages: str) -> Any:
    """A callback context whose session holds these user messages (what `WebTools.scope` reads)."""
    from google.genai import types

    events = [
        SimpleNamespace(author="user", content=types.Content(role="user", parts=[types.Part.from_text(text=message)]))
        for message in messages
    ]
    return SimpleNamespace(state={}, session=SimpleNamespace(events=events))


@pytest.mark.parametrize(
    ("messages", "namespace", "refusal"),
    [
        (["Deployment/web -n shop is down", "now read Deployment/db -n payments"], "shop", None),
        (["Deployment/coredns -n kube-system is crash-looping"], None, "kube-system is outside what AMOS watches"),
        (["Deployment/amos -n amos-system"], None, "amos-system is outside what AMOS watches"),
        (["why is everything broken?"], None, "name the workload in your message"),
    ],
)
def test_the_session_scope_is_the_first_named_workload_in_a_namespace_amos_watches(
    messages: list[str], namespace: str | None, refusal: str | None
) -> None:
    scope, error = WebTools(Settings(model_provider="offline")).scope(session_about(*messages))

    assert (scope.namespace if scope else None) == namespace
    assert (refusal or "") in (error or "") and (error is None) == (refusal is None)


# --- on the lab, through ADK's HTTP API -----------------------------------------------------------


class OneAgent(BaseAgentLoader):
    """Serves one prebuilt agent as the `amos` app (a scripted model, a recording hook)."""

    def __init__(self, agent: BaseAgent) -> None:
        self.agent = agent

    def load_agent(self, agent_name: str) -> BaseAgent | App:
        if agent_name != "amos":
            raise ValueError(agent_name)
        return self.agent

    def list_agents(self) -> list[str]:
        return ["amos"]


def http_app(loader: BaseAgentLoader | None = None) -> TestClient:
    app = get_fast_api_app(
        agents_dir=str(AGENTS_DIR),
        agent_loader=loader,
        web=False,
        session_service_uri="memory://",
        artifact_service_uri="memory://",
        memory_service_uri="memory://",
        use_local_storage=False,
    )
    return TestClient(app)


def chat(http: TestClient, message: str) -> list[dict[str, Any]]:
    session = http.post("/apps/amos/users/sre/sessions", json={})
    assert session.status_code == 200, session.text
    response = http.post(
        "/run",
        json={
            "app_name": "amos",
            "user_id": "sre",
            "session_id": session.json()["id"],
            "new_message": {"role": "user", "parts": [{"text": message}]},
        },
    )
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()
    return events


def parts(events: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    found = []
    for event in events:
        for part in (event.get("content") or {}).get("parts") or []:
            if part.get(key):
                found.append(part[key])
    return found


def summary(events: list[dict[str, Any]]) -> str:
    texts = [part.get("text") or "" for event in events if event.get("author") == "coordinator"
             for part in (event.get("content") or {}).get("parts") or []]  # fmt: skip
    return "\n".join(text for text in texts if text)


def state_of(api_client: client.ApiClient, namespace: str) -> tuple[str, int, str]:
    deployment = client.AppsV1Api(api_client).read_namespaced_deployment("web", namespace)
    assert deployment.metadata is not None and deployment.spec is not None and deployment.spec.template.spec is not None
    container = deployment.spec.template.spec.containers[0]
    assert container.resources is not None
    resource_version, generation = deployment.metadata.resource_version, deployment.metadata.generation
    assert resource_version is not None and generation is not None
    return resource_version, generation, str(container.resources.limits)


@pytest.fixture
def oom_web(api_client: client.ApiClient, namespace: str) -> Iterator[str]:
    """A Deployment whose pods are OOMKilled: the offline diagnosis proposes raising the memory limit."""
    manifest = workloads.deployment("web", IMAGE, env={"LAB_MEMORY_MI": "200"}, memory_limit="64Mi")
    workloads.create(api_client, namespace, manifest)

    def oom_killed() -> bool:
        for pod in workloads.pods_of(api_client, namespace, "app=web"):
            assert pod.status is not None
            for status in pod.status.container_statuses or []:
                last = status.last_state.terminated if status.last_state else None
                if last is not None and last.reason == "OOMKilled":
                    return True
        return False

    workloads.wait_for(oom_killed, timeout=90, what="an OOMKilled pod")
    yield namespace


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch, lab: Any, tmp_path: Path) -> None:
    for name in MODEL_KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AMOS_ADK_WEB_WRITES", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(lab.kubeconfig))
    config = tmp_path / "config.yaml"
    config.write_text("model_provider: offline\n")
    monkeypatch.setenv("AMOS_CONFIG", str(config))
    for name in [module for module in sys.modules if module == "amos" or module.startswith("amos.")]:
        monkeypatch.delitem(sys.modules, name)  # ADK imports the app fresh, with this environment


@pytest.fixture
def lab_settings(lab: Any) -> Settings:
    return Settings(model_provider="offline", kubeconfig=lab.kubeconfig)


@pytest.mark.lab
@pytest.mark.usefixtures("offline_env")
def test_asked_to_diagnose_and_fix_adk_web_changes_nothing(api_client: client.ApiClient, oom_web: str) -> None:
    before = state_of(api_client, oom_web)

    events = chat(http_app(), f"Diagnose and fix Deployment/web -n {oom_web}: it keeps getting OOMKilled")

    called = {function_call["name"] for function_call in parts(events, "functionCall")}
    assert "diagnosis" in called and "remediation" not in called and not called & set(TOOL_ACTIONS)
    assert "oom" in summary(events) and "Recommended" in summary(events), summary(events)
    assert state_of(api_client, oom_web) == before


def refused_reads(events: list[dict[str, Any]]) -> dict[str, str]:
    return {
        f"{response['name']}:{index}": str((response.get("response") or {}).get("error"))
        for index, response in enumerate(parts(events, "functionResponse"))
        if response["name"] != "diagnosis"
    }


@pytest.mark.lab
@pytest.mark.usefixtures("offline_env")
def test_reads_stay_in_the_named_incidents_namespace(
    api_client: client.ApiClient, oom_web: str, lab_settings: Settings
) -> None:
    elsewhere = workloads.create_namespace(api_client, f"{oom_web[:50]}-payments")
    model = ScriptedLlm(
        scripts={
            "coordinator": [call("diagnosis", request="diagnose"), text("done")],
            "diagnosis": [
                [
                    call("list_pods", namespace=elsewhere, workload_kind="Deployment", workload_name="web"),
                    call("get_events", namespace="kube-system", kind="Pod", name="kube-apiserver"),
                    call("describe", namespace="amos-system", kind="Deployment", name="amos"),
                    call("rollback_deployment", namespace=oom_web, name="web", to_revision=1),
                ],
                text("{not a diagnosis"),
            ],
        }
    )
    agent = build_root_agent(lab_settings, model=model)
    before = state_of(api_client, oom_web)

    events = chat(
        http_app(OneAgent(agent)), f"Deployment/web -n {oom_web} is OOMKilled; also read Deployment/web -n {elsewhere}"
    )

    errors = list(refused_reads(events).values())
    assert len(errors) == 4, errors
    assert f"outside the incident's namespace {oom_web}" in errors[0]
    assert "kube-system" in errors[1] and "outside" in errors[1]
    assert "amos-system" in errors[2]
    assert errors[3].startswith("refused: roll back Deployment/web")  # a write is not a diagnosis tool either
    assert state_of(api_client, oom_web) == before
    client.CoreV1Api(api_client).delete_namespace(elsewhere)


class RecordingHook:
    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls: list[tuple[ObjectRef, list[ProposedAction]]] = []

    def __call__(self, incident_ref: ObjectRef, actions: Sequence[ProposedAction]) -> str:
        self.calls.append((incident_ref, list(actions)))
        return self.answer


@pytest.mark.lab
@pytest.mark.usefixtures("offline_env")
def test_with_writes_the_typed_fix_goes_to_the_hook_and_nothing_is_applied_here(
    api_client: client.ApiClient, oom_web: str, lab_settings: Settings
) -> None:
    hook = RecordingHook("submitted to the orchestrator as incident inc-42")
    agent = build_root_agent(lab_settings, writes=True, submit_fix=hook)
    before = state_of(api_client, oom_web)

    events = chat(http_app(OneAgent(agent)), f"Diagnose and fix Deployment/web -n {oom_web}")

    assert hook.calls and hook.calls[0][0] == ObjectRef(kind="Deployment", namespace=oom_web, name="web")
    (action,) = hook.calls[0][1]
    assert isinstance(action, SetResources) and action.memory_limit == "128Mi"
    assert "submitted to the orchestrator as incident inc-42" in summary(events), summary(events)
    assert not {call["name"] for call in parts(events, "functionCall")} & set(TOOL_ACTIONS)
    assert state_of(api_client, oom_web) == before


@pytest.mark.lab
@pytest.mark.usefixtures("offline_env")
def test_with_writes_but_no_orchestrator_connected_the_fix_is_refused(
    api_client: client.ApiClient, oom_web: str, lab_settings: Settings
) -> None:
    agent: LlmAgent = build_root_agent(lab_settings, writes=True)
    before = state_of(api_client, oom_web)

    events = chat(http_app(OneAgent(agent)), f"Diagnose and fix Deployment/web -n {oom_web}")

    assert WRITES_DISABLED in summary(events), summary(events)
    assert state_of(api_client, oom_web) == before
