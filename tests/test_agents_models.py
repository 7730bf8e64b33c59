"""Model selection, the OpenAI-compatible adapter (tool calls both ways) and the `adk web` app.

No key and no network: the OpenAI endpoint is an httpx MockTransport; the adk web app is
loaded with a kubeconfig that does not exist, and its tools must say so instead of raising.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from google.adk.models.llm_request import LlmRequest
from google.genai import types

from agents.models import GeminiModel, build_model, model_label
from agents.offline import OfflineLlm
from core.actions import TOOL_ACTIONS
from core.config import ConfigError, ModelProvider, Settings

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _no_model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "GOOGLE_API_KEY",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "AMOS_MODEL_PROVIDER",
        "AMOS_GEMINI_BASE_URL",
        "AMOS_OPENAI_BASE_URL",
        "AMOS_DRY_RUN",
        "AMOS_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)


def test_no_key_means_the_offline_model() -> None:
    model = build_model(Settings())
    assert isinstance(model, OfflineLlm)
    assert model_label(model) == "offline:amos-rules"
    assert build_model(Settings(max_memory_factor=3.0)).max_memory_factor == 3.0  # type: ignore[attr-defined]


def test_a_key_means_gemini_with_an_httpx_client_at_the_configured_endpoint() -> None:
    settings = Settings(google_api_key="dummy-key", gemini_base_url="http://127.0.0.1:9/", model="gemini-3.5-flash")
    assert settings.resolved_provider() is ModelProvider.GEMINI
    model = build_model(settings)
    assert isinstance(model, GeminiModel) and model.model == "gemini-3.5-flash"
    assert model_label(model) == "gemini:gemini-3.5-flash"

    async def inspect_client() -> tuple[Any, Any]:
        client = model.api_client
        assert model.api_client is client  # one per event loop
        return client, client._api_client

    first, api = asyncio.run(inspect_client())
    second, _ = asyncio.run(inspect_client())
    assert first is not second  # a new loop gets a new client (an httpx client is bound to its loop)
    assert not api._use_aiohttp()  # vcrpy can record httpx, not genai's aiohttp path
    assert isinstance(api._async_httpx_client, httpx.AsyncClient)
    assert api._http_options.base_url.startswith("http://127.0.0.1:9")
    assert "dummy-key" not in repr(model)


def test_gemini_without_key_or_vertex_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="GOOGLE_API_KEY"):
        build_model(Settings(model_provider="gemini"))


def test_openai_compatible_endpoint_needs_a_url() -> None:
    with pytest.raises(ConfigError, match="openai_base_url"):
        build_model(Settings(model_provider="openai", model="qwen3:8b"))
    model = build_model(
        Settings(model_provider="openai", model="qwen3:8b", openai_base_url="http://127.0.0.1:11434/v1")
    )
    assert model_label(model) == "openai:qwen3:8b"


def _request() -> LlmRequest:
    def get_pod_logs(namespace: str, pod: str, previous: bool = False) -> dict[str, Any]:
        """Read a pod's log."""
        return {}

    from google.adk.tools.function_tool import FunctionTool

    declaration = FunctionTool(get_pod_logs)._get_declaration()
    return LlmRequest(
        model="qwen3:8b",
        contents=[
            types.Content(role="user", parts=[types.Part.from_text(text="diagnose shop/web")]),
            types.Content(
                role="model",
                parts=[
                    types.Part(
                        function_call=types.FunctionCall(
                            id="call-1", name="get_pod_logs", args={"namespace": "shop", "pod": "web-1"}
                        )
                    )
                ],
            ),
            types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id="call-1", name="get_pod_logs", response={"ok": True, "data": {"log": "boom"}}
                        )
                    )
                ],
            ),
        ],
        config=types.GenerateContentConfig(
            system_instruction="You are the diagnosis agent.",
            tools=[types.Tool(function_declarations=[declaration])],
        ),
    )


def test_openai_adapter_maps_history_tools_and_tool_calls_both_ways() -> None:
    from agents.openai_compat import OpenAICompatibleLlm

    seen: list[dict[str, Any]] = []

    def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": "qwen3:8b",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls",
                        "message": {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "call-2",
                                    "type": "function",
                                    "function": {
                                        "name": "get_events",
                                        "arguments": '{"namespace": "shop", "kind": "Pod", "name": "web-1"}',
                                    },
                                }
                            ],
                        },
                    }
                ],
                "usage": {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57},
            },
        )

    model = OpenAICompatibleLlm(
        model="qwen3:8b",
        base_url="http://ollama.test/v1",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(endpoint)),
    )

    async def one_turn() -> Any:
        return [response async for response in model.generate_content_async(_request())]

    (response,) = asyncio.run(one_turn())
    body = seen[0]
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool"]
    assert body["messages"][2]["tool_calls"][0] == {
        "id": "call-1",
        "type": "function",
        "function": {"name": "get_pod_logs", "arguments": json.dumps({"namespace": "shop", "pod": "web-1"})},
    }
    assert body["messages"][3]["tool_call_id"] == "call-1"
    assert json.loads(body["messages"][3]["content"]) == {"ok": True, "data": {"log": "boom"}}
    parameters = body["tools"][0]["function"]["parameters"]
    assert body["tools"][0]["function"]["name"] == "get_pod_logs"
    assert set(parameters["properties"]) == {"namespace", "pod", "previous"}
    (call,) = response.get_function_calls()
    assert (call.id, call.name, call.args) == (
        "call-2",
        "get_events",
        {"namespace": "shop", "kind": "Pod", "name": "web-1"},
    )
    assert response.usage_metadata.total_token_count == 57


def test_openai_adapter_survives_malformed_tool_arguments() -> None:
    from agents.openai_compat import from_chat_completion

    response = from_chat_completion(
        {
            "choices": [
                {
                    "finish_reason": "tool_calls",
                    "message": {
                        "content": "thinking",
                        "tool_calls": [{"id": "x", "function": {"name": "describe", "arguments": "{oops"}}],
                    },
                }
            ]
        }
    )
    assert response.content is not None and response.content.parts is not None
    assert response.content.parts[0].text == "thinking"
    assert response.get_function_calls()[0].args == {"invalid_json_arguments": "{oops"}
    assert from_chat_completion({"choices": []}).error_code == "EMPTY_RESPONSE"


def test_adk_web_lists_and_loads_the_app_without_a_cluster_or_a_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from google.adk.agents import BaseAgent, LlmAgent
    from google.adk.cli.utils.agent_loader import AgentLoader

    monkeypatch.setattr(sys, "path", list(sys.path))  # the loader puts agents/ on sys.path; undo that after
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-such-kubeconfig"))
    monkeypatch.setenv("ADK_DISABLE_LOAD_DOTENV", "1")
    monkeypatch.chdir(tmp_path)  # no config.yaml here
    for name in [module for module in sys.modules if module == "amos" or module.startswith("amos.")]:
        monkeypatch.delitem(sys.modules, name)  # an earlier test's load (another kubeconfig) must not be reused
    loader = AgentLoader(str(REPO / "agents"))
    assert loader.list_agents() == ["amos"]
    root = loader.load_agent("amos")
    assert isinstance(root, BaseAgent)
    assert root.name == "coordinator"
    diagnosis = root.sub_agents[0]
    assert diagnosis.name == "diagnosis"
    offered = {getattr(tool, "__name__", "") for agent in root.sub_agents for tool in getattr(agent, "tools", [])}
    assert not offered & set(TOOL_ACTIONS)  # adk web runs outside the safety loop: it never writes
    assert isinstance(diagnosis, LlmAgent) and isinstance(diagnosis.model, OfflineLlm)
    describe = next(tool for tool in diagnosis.tools if callable(tool) and getattr(tool, "__name__", "") == "describe")

    class Context:  # the one attribute the read tools' resolver does not need
        state: ClassVar[dict[str, Any]] = {}

    result = describe(namespace="shop", kind="Deployment", name="web", tool_context=Context())
    assert result["ok"] is False and "cannot reach the cluster" in result["error"]
    assert "no-such-kubeconfig" in result["error"]


def test_adk_web_tools_keep_their_declarations() -> None:
    from google.adk.tools.function_tool import FunctionTool

    from agents.app import WebTools

    tools = WebTools(Settings())
    declarations = {}
    for function in tools.read_functions():
        declaration = FunctionTool(function)._get_declaration()
        assert declaration is not None and declaration.name is not None
        schema = declaration.parameters_json_schema
        if not schema:
            assert declaration.parameters is not None and declaration.parameters.json_schema is not None
            schema = declaration.parameters.json_schema.model_dump(exclude_none=True)
        declarations[declaration.name] = set(schema["properties"])
    assert declarations["get_pod_logs"] == {"namespace", "pod", "container", "previous", "tail_lines"}
    assert declarations["get_rollout_history"] >= {"namespace", "kind"}
    assert all("tool_context" not in params for params in declarations.values())


def test_schemas_sent_to_gemini_use_the_documented_json_schema_subset() -> None:
    from google.adk.tools.set_model_response_tool import SetModelResponseTool

    from agents.models import plain_json_schema
    from core.actions import Diagnosis

    declaration = SetModelResponseTool(Diagnosis)._get_declaration()
    assert declaration is not None
    schema = declaration.parameters_json_schema
    plain = json.dumps(plain_json_schema(schema))
    assert "discriminator" not in plain and "oneOf" not in plain and '"const"' not in plain
    items = plain_json_schema(schema)["properties"]["proposed_actions"]["items"]
    assert {"$ref": "#/$defs/Rollback"} in items["anyOf"]
    assert plain_json_schema(schema)["$defs"]["Scale"]["properties"]["action"]["enum"] == ["scale"]
