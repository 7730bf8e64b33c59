"""Test doubles for the agent graph: scripted models, in-process or over the Gemini REST API.

- `ScriptedLlm`: a `BaseLlm` that plays a script per agent (coordinator, diagnosis,
  remediation); a step may be a callable that reacts to the request (a model that
  "follows" text it read in a tool result, say).
- `FakeGeminiServer`: a local HTTP server speaking `POST /v1beta/models/{model}:generateContent`
  (JSON, camelCase, function calls), scripted the same way, so the real google-genai
  client and ADK's `Gemini` model run unchanged against it.
- `FakeOpenAIServer`: the same for `POST /v1/chat/completions` (tool calls), so the real
  `openai` client and AMOS's OpenAI-compatible adapter run unchanged against it.

Which agent is asking is read from the tools it offers, as the offline model does:
`set_model_response` -> diagnosis, a write tool -> remediation, `diagnosis` -> coordinator.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncGenerator, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from google.adk.models import BaseLlm, LlmCapabilities
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from pydantic import Field, PrivateAttr

from agents.guardrails import COORDINATOR, DIAGNOSIS, REMEDIATION, SET_MODEL_RESPONSE
from core.actions import TOOL_ACTIONS

Step = Any  # Part | str | list[Part | str] | Callable[[request], Part | str | list[...]]


class ScriptExhausted(AssertionError):
    pass


def agent_of(tool_names: Iterable[str]) -> str:
    names = set(tool_names)
    if SET_MODEL_RESPONSE in names:
        return DIAGNOSIS
    if names & set(TOOL_ACTIONS):
        return REMEDIATION
    if DIAGNOSIS in names:
        return COORDINATOR
    return "unknown"


def call(tool: str, /, **args: Any) -> types.Part:
    return types.Part.from_function_call(name=tool, args=args)


def text(value: str) -> types.Part:
    return types.Part.from_text(text=value)


def _parts(step: Any) -> list[types.Part]:
    if isinstance(step, types.Part):
        return [step]
    if isinstance(step, str):
        return [text(step)]
    return [item if isinstance(item, types.Part) else text(str(item)) for item in step]


class ScriptedLlm(BaseLlm):
    """Plays `scripts[agent]` one step per model call; `repeat_last` makes a step loop forever."""

    model: str = "scripted"
    scripts: dict[str, list[Any]] = Field(default_factory=dict)
    repeat_last: bool = False
    delay_seconds: float = 0.0
    _positions: dict[str, int] = PrivateAttr(default_factory=dict)
    _requests: list[tuple[str, LlmRequest]] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def capabilities(self) -> LlmCapabilities:
        return LlmCapabilities(output_schema_and_tools=False)

    @property
    def requests(self) -> list[tuple[str, LlmRequest]]:
        return list(self._requests)

    def _next(self, agent: str) -> Any:
        with self._lock:
            script = self.scripts.get(agent) or []
            position = self._positions.get(agent, 0)
            if position >= len(script):
                if not (self.repeat_last and script):
                    raise ScriptExhausted(f"the script for agent {agent!r} has no step {position + 1}")
                position = len(script) - 1
            self._positions[agent] = position + 1
            return script[position]

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        agent = agent_of(llm_request.tools_dict)
        self._requests.append((agent, llm_request))
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        step = self._next(agent)
        if callable(step):
            step = step(llm_request)
        yield LlmResponse(
            content=types.Content(role="model", parts=_parts(step)),
            turn_complete=True,
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=100, candidates_token_count=20, total_token_count=120
            ),
        )


def tool_results(llm_request: LlmRequest) -> list[tuple[str, Any]]:
    """(tool name, response) of every answered call in the conversation so far."""
    found = []
    for content in llm_request.contents:
        for part in content.parts or []:
            if part.function_response is not None:
                found.append((part.function_response.name or "", part.function_response.response))
    return found


# --- a fake Gemini REST endpoint -----------------------------------------------------------------

GeminiStep = Any  # dict part | list[dict part] | str | Callable[[dict body], ...]


def gemini_call(tool: str, /, **args: Any) -> dict[str, Any]:
    return {"functionCall": {"name": tool, "args": args}}


def gemini_text(value: str) -> dict[str, Any]:
    return {"text": value}


def declared_tools(body: dict[str, Any]) -> list[str]:
    names = []
    for tool in body.get("tools") or []:
        for declaration in tool.get("functionDeclarations") or []:
            names.append(declaration.get("name", ""))
    return names


class _ScriptedServer:
    """A local HTTP server answering POSTs from per-agent scripts; subclasses speak one API."""

    thread_name = "fake-model"

    def __init__(self, scripts: dict[str, Sequence[Any]]) -> None:
        self.scripts = {agent: list(steps) for agent, steps in scripts.items()}
        self.positions: dict[str, int] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, name=self.thread_name, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def next_step(self, agent: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[bool, Any]:
        """(found, step) for `agent`, the body kept; a callable step is called with the body."""
        with self._lock:
            self.requests.append((agent, body))
            self.headers.append(headers)
            steps = self.scripts.get(agent) or []
            position = self.positions.get(agent, 0)
            if position >= len(steps):
                return False, f"no scripted step {position + 1} for agent {agent}"
            self.positions[agent] = position + 1
            step = steps[position]
        return True, step(body) if callable(step) else step

    def answer(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                status, payload = server.answer(self.path.split("?", 1)[0], body, dict(self.headers.items()))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

        return Handler


class FakeGeminiServer(_ScriptedServer):
    """`POST /v1beta/models/{model}:generateContent` on 127.0.0.1, answering from per-agent scripts.

    Every request body is kept in `requests` as (agent, body); a request it has no step for
    gets HTTP 500 with a message, which the client reports as a model error.
    """

    thread_name = "fake-gemini"

    def answer(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if not path.endswith(":generateContent"):
            return 404, {"error": {"code": 404, "message": f"not found: {path}", "status": "NOT_FOUND"}}
        model = path.rsplit("/", 1)[-1].removesuffix(":generateContent")
        found, step = self.next_step(agent_of(declared_tools(body)), body, headers)
        if not found:
            return 500, {"error": {"code": 500, "message": f"fake Gemini: {step}", "status": "INTERNAL"}}
        parts = [gemini_text(step)] if isinstance(step, str) else [step] if isinstance(step, dict) else list(step)
        return 200, {
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 200, "candidatesTokenCount": 30, "totalTokenCount": 230},
            "modelVersion": model,
        }


# --- a fake OpenAI-compatible endpoint (Ollama, vLLM, ...) ----------------------------------------


def openai_call(tool: str, /, **args: Any) -> dict[str, Any]:
    return {"name": tool, "arguments": args}


def openai_declared_tools(body: dict[str, Any]) -> list[str]:
    return [str((tool.get("function") or {}).get("name", "")) for tool in body.get("tools") or []]


def openai_tool_results(body: dict[str, Any]) -> list[str]:
    """The content of every tool message in a Chat Completions request (JSON text of the tool result)."""
    return [
        str(message.get("content") or "") for message in body.get("messages") or [] if message.get("role") == "tool"
    ]


class FakeOpenAIServer(_ScriptedServer):
    """`POST /v1/chat/completions` on 127.0.0.1, answering from per-agent scripts.

    A step is a text, an `openai_call(...)`, a list of calls, or a callable of the request body.
    `base_url` ends in `/v1`, as AMOS's `openai_base_url` does for Ollama.
    """

    thread_name = "fake-openai"

    @property
    def base_url(self) -> str:
        return super().base_url + "/v1"

    def answer(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if not path.endswith("/chat/completions"):
            return 404, {"error": {"message": f"not found: {path}", "type": "not_found"}}
        found, step = self.next_step(agent_of(openai_declared_tools(body)), body, headers)
        if not found:
            return 500, {"error": {"message": f"fake OpenAI: {step}", "type": "server_error"}}
        calls = [step] if isinstance(step, dict) else [] if isinstance(step, str) else list(step)
        message: dict[str, Any] = {"role": "assistant", "content": step if isinstance(step, str) else None}
        if calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{n}",
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])},
                }
                for n, call in enumerate(calls, start=len(self.requests) * 100)
            ]
        return 200, {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": str(body.get("model", "")),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": {"prompt_tokens": 200, "completion_tokens": 30, "total_tokens": 230},
        }


def function_responses(body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, response) of the function responses in a Gemini request body."""
    found = []
    for content in body.get("contents") or []:
        for part in content.get("parts") or []:
            response = part.get("functionResponse")
            if response:
                found.append((response.get("name", ""), response.get("response")))
    return found
