"""A small ADK model adapter for any OpenAI-compatible chat endpoint (Ollama, vLLM, LM Studio, ...).

Maps ADK's `LlmRequest` (genai `Content`s, function declarations) to a Chat Completions
request and the reply back, tool calls included both ways. Non-streaming only: AMOS
runs headless and needs whole turns.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import openai
from google.adk.models import BaseLlm, LlmCapabilities
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from pydantic import ConfigDict, Field, SecretStr

from agents.instructions import instruction_text

_FINISH_REASONS = {
    "stop": types.FinishReason.STOP,
    "tool_calls": types.FinishReason.STOP,
    "function_call": types.FinishReason.STOP,
    "length": types.FinishReason.MAX_TOKENS,
    "content_filter": types.FinishReason.SAFETY,
}


class OpenAICompatibleLlm(BaseLlm):
    """Chat Completions with tool calls; `base_url` like `http://127.0.0.1:11434/v1` for Ollama."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str
    base_url: str | None = None
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    timeout_seconds: float = 60.0
    # An httpx-compatible AsyncClient (openai 3 types it as httpx2's); tests inject a MockTransport.
    http_client: Any = Field(default=None, exclude=True, repr=False)

    @property
    def capabilities(self) -> LlmCapabilities:
        return LlmCapabilities(output_schema_and_tools=False)

    def _client(self) -> openai.AsyncOpenAI:
        # A new client per call keeps the model free of event-loop state; the cost is a new connection.
        return openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self.api_key.get_secret_value() if self.api_key is not None else "not-needed",
            timeout=self.timeout_seconds,
            max_retries=1,
            http_client=self.http_client,
        )

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        body = to_chat_request(llm_request, self.model)
        client = self._client()
        try:
            completion = await client.chat.completions.create(**body)
        finally:
            if self.http_client is None:
                await client.close()
        yield from_chat_completion(completion.model_dump(mode="json"))


def _schema_json(schema: types.Schema | None, json_schema: Any) -> dict[str, Any]:
    if json_schema is not None:
        return dict(json_schema)
    if schema is None:
        return {"type": "object", "properties": {}}
    dumped: dict[str, Any] = schema.json_schema.model_dump(mode="json", exclude_none=True)
    return dumped


def _tools(config: types.GenerateContentConfig | None) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = []
    for tool in (config.tools if config else None) or []:
        for declaration in getattr(tool, "function_declarations", None) or []:
            tools.append(
                {
                    "type": "function",
                    "function": {
                        "name": declaration.name,
                        "description": declaration.description or "",
                        "parameters": _schema_json(declaration.parameters, declaration.parameters_json_schema),
                    },
                }
            )
    return tools


def to_chat_request(llm_request: LlmRequest, model: str) -> dict[str, Any]:
    """The Chat Completions body for an ADK request (pure; unit-tested)."""
    messages: list[dict[str, Any]] = []
    config = llm_request.config
    system = instruction_text(config.system_instruction if config else None)
    if system:
        messages.append({"role": "system", "content": system})
    call_ids: dict[str, list[str]] = {}  # name -> ids of calls not answered yet, for responses without an id
    counter = 0
    for content in llm_request.contents:
        texts: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        tool_messages: list[dict[str, Any]] = []
        for part in content.parts or []:
            if part.thought:
                continue
            if part.function_call is not None:
                counter += 1
                call = part.function_call
                call_id = call.id or f"call_{counter}"
                call_ids.setdefault(call.name or "", []).append(call_id)
                tool_calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": json.dumps(call.args or {})},
                    }
                )
            elif part.function_response is not None:
                response = part.function_response
                pending = call_ids.get(response.name or "", [])
                call_id = response.id or (pending[0] if pending else f"call_{response.name}")
                if call_id in pending:
                    pending.remove(call_id)
                tool_messages.append(
                    {"role": "tool", "tool_call_id": call_id, "content": json.dumps(response.response, default=str)}
                )
            elif part.text:
                texts.append(part.text)
        if content.role == "model":
            if texts or tool_calls:
                message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) or None}
                if tool_calls:
                    message["tool_calls"] = tool_calls
                messages.append(message)
        else:
            messages.extend(tool_messages)
            if texts:
                messages.append({"role": "user", "content": "\n".join(texts)})
    body: dict[str, Any] = {"model": model, "messages": messages}
    tools = _tools(config)
    if tools:
        body["tools"] = tools
    if config is not None:
        if config.temperature is not None:
            body["temperature"] = config.temperature
        if config.max_output_tokens is not None:
            body["max_tokens"] = config.max_output_tokens
        schema = config.response_json_schema or (
            config.response_schema.json_schema.model_dump(mode="json", exclude_none=True)
            if isinstance(config.response_schema, types.Schema)
            else None
        )
        if schema is not None and not tools:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}
    return body


def from_chat_completion(completion: dict[str, Any]) -> LlmResponse:
    """An ADK response from a Chat Completions reply (pure; unit-tested)."""
    choices = completion.get("choices") or []
    if not choices:
        return LlmResponse(error_code="EMPTY_RESPONSE", error_message="the endpoint returned no choices")
    choice = choices[0]
    message = choice.get("message") or {}
    parts: list[types.Part] = []
    if message.get("content"):
        parts.append(types.Part.from_text(text=str(message["content"])))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        raw = function.get("arguments") or "{}"
        try:
            args = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except ValueError:
            args = {"invalid_json_arguments": str(raw)[:500]}
        if not isinstance(args, dict):
            args = {"invalid_json_arguments": str(raw)[:500]}
        part = types.Part.from_function_call(name=str(function.get("name", "")), args=args)
        if part.function_call is not None and call.get("id"):
            part.function_call.id = str(call["id"])
        parts.append(part)
    usage = completion.get("usage") or {}
    usage_metadata = None
    if usage:
        usage_metadata = types.GenerateContentResponseUsageMetadata(
            prompt_token_count=usage.get("prompt_tokens"),
            candidates_token_count=usage.get("completion_tokens"),
            total_token_count=usage.get("total_tokens"),
        )
    return LlmResponse(
        content=types.Content(role="model", parts=parts) if parts else None,
        finish_reason=_FINISH_REASONS.get(str(choice.get("finish_reason")), types.FinishReason.OTHER),
        usage_metadata=usage_metadata,
        model_version=completion.get("model"),
        turn_complete=True,
    )
