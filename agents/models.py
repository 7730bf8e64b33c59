"""Model selection: Gemini through google-genai, an OpenAI-compatible endpoint, or offline rules.

The model is a dependency picked from `Settings.resolved_provider()`; nothing else in
AMOS names a model. Gemini always gets an explicit httpx client (one per event loop):
google-genai would otherwise switch to aiohttp when it is importable, a path vcrpy
cannot record or replay.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import AsyncGenerator
from typing import Any

import httpx
from google.adk.models import BaseLlm, Gemini, LlmCapabilities
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import Client, types
from pydantic import ConfigDict, Field, PrivateAttr, SecretStr

from core.config import ConfigError, ModelProvider, Settings

RETRY_ATTEMPTS = 3


class GeminiModel(Gemini):
    """ADK's `Gemini`, built from AMOS settings, with a fresh httpx client per event loop."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    vertexai: bool = False
    project: str | None = None
    location: str | None = None
    timeout_seconds: float = 60.0
    _clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = PrivateAttr(
        default_factory=weakref.WeakKeyDictionary
    )
    _loopless_client: Client | None = PrivateAttr(None)

    @property
    def capabilities(self) -> LlmCapabilities:
        # The Gemini API (not Vertex) cannot pair a response schema with tools; ADK then
        # adds `set_model_response`, the same path the offline and scripted models take.
        return LlmCapabilities(output_schema_and_tools=self.vertexai)

    @property
    def api_client(self) -> Client:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            if self._loopless_client is None:
                self._loopless_client = self._new_client()
            return self._loopless_client
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._new_client()
        return client

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        for tool in (llm_request.config.tools if llm_request.config else None) or []:
            for declaration in getattr(tool, "function_declarations", None) or []:
                if declaration.parameters_json_schema is not None:
                    declaration.parameters_json_schema = plain_json_schema(declaration.parameters_json_schema)
        async for response in super().generate_content_async(llm_request, stream):
            yield response

    def _new_client(self) -> Client:
        http_options = types.HttpOptions(
            base_url=self.base_url,
            timeout=int(self.timeout_seconds * 1000),
            retry_options=self.retry_options,
            httpx_async_client=httpx.AsyncClient(timeout=self.timeout_seconds),
        )
        kwargs: dict[str, Any] = {"http_options": http_options}
        if self.vertexai:
            kwargs.update(vertexai=True, project=self.project, location=self.location)
        else:
            kwargs["api_key"] = self.api_key.get_secret_value() if self.api_key is not None else None
        return Client(**kwargs)


def plain_json_schema(schema: Any) -> Any:
    """The JSON Schema subset Gemini documents: pydantic's `discriminator` dropped, `oneOf` as `anyOf`,
    `const` as a one-value `enum`. The meaning for a model is the same; validation stays in pydantic."""
    if isinstance(schema, list):
        return [plain_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "discriminator":
            continue
        if key == "oneOf":
            result["anyOf"] = plain_json_schema(value)
        elif key == "const":
            result["enum"] = [value]
        elif key in {"properties", "$defs"} and isinstance(value, dict):
            result[key] = {name: plain_json_schema(item) for name, item in value.items()}
        else:
            result[key] = plain_json_schema(value)
    return result


def build_gemini(settings: Settings) -> GeminiModel:
    if settings.google_api_key is None and not settings.use_vertexai:
        raise ConfigError(
            "model_provider 'gemini' needs GOOGLE_API_KEY, or GOOGLE_GENAI_USE_VERTEXAI=true with GOOGLE_CLOUD_PROJECT"
        )
    if settings.use_vertexai and not settings.google_cloud_project:
        raise ConfigError("invalid setting 'google_cloud_project': Vertex AI needs a project (GOOGLE_CLOUD_PROJECT)")
    return GeminiModel(
        model=settings.model,
        api_key=settings.google_api_key,
        vertexai=settings.use_vertexai,
        project=settings.google_cloud_project,
        location=settings.google_cloud_location,
        base_url=settings.gemini_base_url,
        timeout_seconds=settings.model_timeout_seconds,
        retry_options=types.HttpRetryOptions(attempts=RETRY_ATTEMPTS, http_status_codes=[429, 500, 502, 503, 504]),
    )


def build_model(settings: Settings) -> BaseLlm:
    """The model for every agent of the graph, from `settings.resolved_provider()`.

    Raises `ConfigError` when the chosen provider lacks what it needs (a key, a URL).
    """
    provider = settings.resolved_provider()
    if provider is ModelProvider.GEMINI:
        return build_gemini(settings)
    if provider is ModelProvider.OPENAI:
        from agents.openai_compat import OpenAICompatibleLlm

        if settings.openai_base_url is None and settings.openai_api_key is None:
            raise ConfigError("model_provider 'openai' needs openai_base_url (Ollama, vLLM, ...) or openai_api_key")
        return OpenAICompatibleLlm(
            model=settings.model,
            base_url=settings.openai_base_url,
            api_key=settings.openai_api_key,
            timeout_seconds=settings.model_timeout_seconds,
        )
    from agents.offline import OfflineLlm

    return OfflineLlm(max_memory_factor=settings.max_memory_factor)


def model_label(model: BaseLlm) -> str:
    """How reports name the model: `gemini:gemini-3.5-flash`, `openai:qwen3:8b`, `offline:amos-rules`."""
    from agents.offline import OfflineLlm

    if isinstance(model, Gemini):
        return f"gemini:{model.model}"
    if isinstance(model, OfflineLlm):
        return f"offline:{model.model}"
    openai_compat = sys.modules.get("agents.openai_compat")  # not imported unless used: `openai` is slow to import
    if openai_compat is not None and isinstance(model, openai_compat.OpenAICompatibleLlm):
        return f"openai:{model.model}"
    return f"{type(model).__name__}:{model.model}"
