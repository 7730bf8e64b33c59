"""AMOS settings: one validated model, read from `config.yaml` and environment variables.

Environment variables win over the file and use the `AMOS_` prefix
(`AMOS_SMTP_HOST`, `AMOS_DRY_RUN`, ...); the model keys keep their usual names
(`GOOGLE_API_KEY`, `GOOGLE_GENAI_USE_VERTEXAI`, `KUBECONFIG`). A wrong value stops
start-up with one message naming the field (`load_settings` raises `ConfigError`).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_GEMINI_MODEL = "gemini-3.5-flash"  # current Flash model (google-adk 2.13's default); 2.0-flash is retired


class ConfigError(Exception):
    """A configuration problem a person must fix; the message names the field."""


class ModelProvider(StrEnum):
    AUTO = "auto"  # Gemini when a key or Vertex AI is configured, otherwise offline
    GEMINI = "gemini"
    OPENAI = "openai"  # any OpenAI-compatible endpoint: Ollama, vLLM, ...
    OFFLINE = "offline"  # deterministic rules, no network


class Verb(StrEnum):
    PATCH = "patch"
    SCALE = "scale"
    DELETE_POD = "delete_pod"
    ROLLBACK = "rollback"
    RESTART = "restart"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AMOS_", extra="forbid", populate_by_name=True)

    # --- cluster and scope
    kubeconfig: Path | None = Field(None, validation_alias=AliasChoices("kubeconfig", "KUBECONFIG"))
    namespaces: list[str] = Field(default_factory=list, description="watched namespaces; empty means all")
    excluded_namespaces: list[str] = Field(default_factory=lambda: ["kube-system", "kube-public", "kube-node-lease"])
    own_namespace: str = "amos-system"
    ignore_annotation: str = "amos.io/ignore"
    protected_label: str = "amos.io/protected"

    # --- detection
    aggregation_window_seconds: float = Field(1.0, ge=0, le=300)
    incident_cooldown_seconds: float = Field(30.0, ge=0)
    pending_grace_seconds: float = Field(60.0, ge=0)
    unavailable_grace_seconds: float = Field(120.0, ge=0)

    # --- remediation guard rails
    dry_run: bool = False
    max_attempts: int = Field(2, ge=1, le=5)
    allowed_verbs: list[Verb] = Field(default_factory=lambda: list(Verb))
    verify_timeout_seconds: float = Field(120.0, gt=0)
    workload_cooldown_seconds: float = Field(300.0, ge=0)
    workload_block_seconds: float = Field(3600.0, ge=0)
    actions_per_hour: int = Field(30, ge=1)
    outage_failing_ratio: float = Field(0.5, gt=0, le=1)
    outage_min_workloads: int = Field(4, ge=1)
    max_memory_factor: float = Field(2.0, gt=1, le=8)
    max_replicas: int = Field(50, ge=1)
    max_concurrent_incidents: int = Field(4, ge=1, le=64)
    snapshot_retention: int = Field(50, ge=1)

    # --- model
    model_provider: ModelProvider = ModelProvider.AUTO
    model: str = DEFAULT_GEMINI_MODEL
    google_api_key: SecretStr | None = Field(None, validation_alias=AliasChoices("google_api_key", "GOOGLE_API_KEY"))
    use_vertexai: bool = Field(False, validation_alias=AliasChoices("use_vertexai", "GOOGLE_GENAI_USE_VERTEXAI"))
    google_cloud_project: str | None = Field(
        None, validation_alias=AliasChoices("google_cloud_project", "GOOGLE_CLOUD_PROJECT")
    )
    google_cloud_location: str = Field(
        "us-central1", validation_alias=AliasChoices("google_cloud_location", "GOOGLE_CLOUD_LOCATION")
    )
    gemini_base_url: str | None = None
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    max_model_calls: int = Field(12, ge=2, le=100)
    max_tool_calls: int = Field(24, ge=1, le=200)
    session_token_budget: int = Field(80_000, ge=1_000)
    session_timeout_seconds: float = Field(180.0, gt=0)
    model_timeout_seconds: float = Field(60.0, gt=0)

    # --- notifications
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: str = Field("starttls", pattern="^(none|starttls|tls)$")
    smtp_timeout_seconds: float = Field(10.0, gt=0)
    engineer_email: str | None = None
    from_email: str = "amos@localhost"

    # --- service
    http_port: int = Field(8080, ge=0, le=65535)
    log_json: bool = False
    state_namespace: str | None = Field(None, description="where journal, snapshots and counts live; own_namespace by default")
    leader_election: bool = True
    lease_name: str = "amos-leader"

    @field_validator("engineer_email", "from_email")
    @classmethod
    def _looks_like_mail(cls, value: str | None) -> str | None:
        if value is not None and "@" not in value:
            raise ValueError("must be an e-mail address")
        return value

    @property
    def store_namespace(self) -> str:
        return self.state_namespace or self.own_namespace

    def resolved_provider(self) -> ModelProvider:
        if self.model_provider is not ModelProvider.AUTO:
            return self.model_provider
        if self.google_api_key is not None or self.use_vertexai:
            return ModelProvider.GEMINI
        return ModelProvider.OFFLINE

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, file_secret_settings


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from `path` (or `$AMOS_CONFIG`, or ./config.yaml when present) plus the environment."""
    if path is None and os.environ.get("AMOS_CONFIG"):
        path = Path(os.environ["AMOS_CONFIG"])
    if path is None and Path("config.yaml").exists():
        path = Path("config.yaml")
    file_values = _read_yaml(path) if path is not None else {}
    env_names = {f"AMOS_{name}".upper() for name in Settings.model_fields} | {
        "KUBECONFIG",
        "GOOGLE_API_KEY",
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_CLOUD_PROJECT",
        "GOOGLE_CLOUD_LOCATION",
    }
    # The file's values only apply where no environment variable sets the same field.
    from_file = {key: value for key, value in file_values.items() if not _env_sets(key, env_names)}
    try:
        return Settings(**from_file, **overrides)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "settings"
        source = f" (in {path})" if path is not None else ""
        raise ConfigError(f"invalid setting '{field}'{source}: {first['msg']}") from error


def _env_sets(key: str, env_names: set[str]) -> bool:
    candidates = {f"AMOS_{key}".upper(), key.upper()}
    return any(name in os.environ for name in candidates & env_names)
