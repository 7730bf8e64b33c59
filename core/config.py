"""AMOS settings: one validated model, read from `config.yaml` and environment variables.

Environment variables win over the file and use the `AMOS_` prefix
(`AMOS_SMTP_HOST`, `AMOS_DRY_RUN`, ...); the model keys keep their usual names
(`GOOGLE_API_KEY`, `GOOGLE_GENAI_USE_VERTEXAI`, `KUBECONFIG`). Lists may be written
as `shop,web` in a variable. `load_config` reports every problem at once, each naming
the variable or file key to fix, and warns about names it does not know.
`config.example.yaml` is `example_config()`'s output (a test keeps them equal).
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from core.report import Outcome

DEFAULT_GEMINI_MODEL = "gemini-3.5-flash"  # current Flash model (google-adk 2.13's default); 2.0-flash is retired
ENV_PREFIX = "AMOS_"
# AMOS_* variables that are read elsewhere (the config file path, the lab and the test tiers), not settings.
OTHER_AMOS_VARIABLES = frozenset({"AMOS_CONFIG", "AMOS_LAB_CACHE", "AMOS_LAB_WORKDIR", "AMOS_RECORD"})


class ConfigError(Exception):
    """Configuration problems a person must fix; each one names the variable or file key."""

    def __init__(self, *problems: str) -> None:
        super().__init__(*problems)
        self.problems = list(problems)

    def __str__(self) -> str:
        return "; ".join(self.problems)


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


class SmtpSecurity(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS, usually port 465


def _comma_list(value: Any) -> Any:
    """`shop,web` or `["shop", "web"]` (JSON) from a variable; YAML lists pass through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            return value  # reported by the list validation with the raw text
    return [item.strip() for item in text.split(",") if item.strip()]


Namespaces = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]
Verbs = Annotated[list[Verb], NoDecode, BeforeValidator(_comma_list)]
Outcomes = Annotated[list[Outcome], NoDecode, BeforeValidator(_comma_list)]
_OUTCOMES = " (outcome names such as escalated, rolled_back); empty means every outcome"
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*$")


# Kubernetes' own namespaces and those of common cluster infrastructure: AMOS's RBAC could patch them, but a
# "fix" there (an ingress controller, cert-manager, a service mesh, GitOps, monitoring) is a platform team's call.
INFRASTRUCTURE_NAMESPACES = (
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "cert-manager",
    "ingress-nginx",
    "istio-system",
    "linkerd",
    "argocd",
    "flux-system",
    "monitoring",
    "gatekeeper-system",
    "kyverno",
    "calico-system",
    "tigera-operator",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", populate_by_name=True)

    # --- cluster and scope
    kubeconfig: Path | None = Field(
        None,
        validation_alias=AliasChoices("kubeconfig", "KUBECONFIG"),
        description="kubeconfig file; empty: in-cluster config, else ~/.kube/config",
    )
    cluster_name: str = Field("", description="a name for this cluster in reports and notifications")
    namespaces: Namespaces = Field(default_factory=list, description="namespaces to watch and act in; empty means all")
    excluded_namespaces: Namespaces = Field(
        default_factory=lambda: list(INFRASTRUCTURE_NAMESPACES),
        description="namespaces never watched or touched (default: Kubernetes' own and common infrastructure)",
    )
    own_namespace: str = Field("amos-system", description="the namespace AMOS runs in (its lease lives there)")
    ignore_annotation: str = Field("amos.io/ignore", description="workloads with this annotation set are left alone")
    protected_label: str = Field("amos.io/protected", description="objects with this label are never changed")

    # --- detection
    aggregation_window_seconds: float = Field(
        1.0, ge=0, le=300, description="faults of one workload within this window become one incident"
    )
    incident_cooldown_seconds: float = Field(30.0, ge=0, description="a resolved incident stays quiet this long")
    pending_grace_seconds: float = Field(
        60.0, ge=0, description="a pod may stay Pending this long before it is a fault"
    )
    unavailable_grace_seconds: float = Field(
        120.0, ge=0, description="a Deployment may lack available replicas this long before it is a fault"
    )

    # --- remediation guard rails
    mode_default: Literal["auto", "approve", "observe"] = Field(
        "auto", description="auto: apply fixes; approve: propose and wait for a person; observe: report only"
    )
    proposal_ttl_seconds: float = Field(
        3600.0, gt=0, description="approve mode: a proposal not approved within this time expires unapplied"
    )
    approval_check_seconds: float = Field(5.0, gt=0, description="approve mode: how often approvals are looked for")
    dry_run: bool = Field(False, description="diagnose and report only; change nothing")
    max_attempts: int = Field(2, ge=1, le=5, description="fix attempts per incident before escalating")
    allowed_verbs: Verbs = Field(
        default_factory=lambda: list(Verb), description="kinds of change AMOS may make: " + ", ".join(Verb)
    )
    verify_timeout_seconds: float = Field(120.0, gt=0, description="how long a fix has to prove itself")
    workload_cooldown_seconds: float = Field(300.0, ge=0, description="pause between two fixes of one workload")
    workload_block_seconds: float = Field(3600.0, ge=0, description="a workload that exhausted its attempts rests")
    actions_per_hour: int = Field(30, ge=1, description="cluster-wide budget of applied changes per hour")
    outage_failing_ratio: float = Field(
        0.5, gt=0, le=1, description="share of failing workloads in a namespace that means an outage (no fixes)"
    )
    outage_min_workloads: int = Field(4, ge=1, description="outage detection needs at least this many workloads")
    storm_min_workloads: int = Field(
        10,
        ge=2,
        description="this many workloads breaking cluster-wide within storm_window_seconds is a storm (no fixes)",
    )
    storm_window_seconds: float = Field(600.0, gt=0, description="the window of the cluster-wide storm rule")
    max_memory_factor: float = Field(2.0, gt=1, le=8, description="a memory limit may grow at most by this factor")
    max_replicas: int = Field(50, ge=1, description="a scale change never goes above this")
    max_concurrent_incidents: int = Field(4, ge=1, le=64, description="incidents worked on at the same time")
    snapshot_retention: int = Field(50, ge=1, description="snapshots kept in the state namespace")

    # --- model
    model_provider: ModelProvider = Field(
        ModelProvider.AUTO, description="auto (Gemini with a key, else offline), gemini, openai or offline"
    )
    model: str = Field(DEFAULT_GEMINI_MODEL, description="model name for the provider")
    google_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("google_api_key", "GOOGLE_API_KEY"),
        description="Gemini API key (better from a Secret, as GOOGLE_API_KEY)",
    )
    use_vertexai: bool = Field(
        False,
        validation_alias=AliasChoices("use_vertexai", "GOOGLE_GENAI_USE_VERTEXAI"),
        description="use Gemini through Vertex AI (needs google_cloud_project)",
    )
    google_cloud_project: str | None = Field(
        None,
        validation_alias=AliasChoices("google_cloud_project", "GOOGLE_CLOUD_PROJECT"),
        description="Vertex AI project",
    )
    google_cloud_location: str = Field(
        "us-central1",
        validation_alias=AliasChoices("google_cloud_location", "GOOGLE_CLOUD_LOCATION"),
        description="Vertex AI location",
    )
    gemini_base_url: str | None = Field(None, description="Gemini API endpoint override (proxies, tests)")
    openai_base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. Ollama or vLLM")
    openai_api_key: SecretStr | None = Field(None, description="key for the OpenAI-compatible endpoint")
    max_model_calls: int = Field(12, ge=2, le=100, description="model requests per incident session")
    max_tool_calls: int = Field(24, ge=1, le=200, description="tool calls per incident session")
    session_token_budget: int = Field(80_000, ge=1_000, description="tokens per incident session")
    session_timeout_seconds: float = Field(180.0, gt=0, description="wall-clock limit of one incident session")
    model_timeout_seconds: float = Field(60.0, gt=0, description="timeout of one model request")
    adk_web_writes: bool = Field(
        False, description="hand fixes proposed in `adk web` to the orchestrator's safety loop (default: diagnose-only)"
    )

    # --- notifications
    smtp_host: str | None = Field(None, description="SMTP server for report e-mails; empty: no e-mail")
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP port")
    smtp_username: str | None = Field(None, description="SMTP user (needs smtp_password)")
    smtp_password: SecretStr | None = Field(None, description="SMTP password (better from a Secret)")
    smtp_security: SmtpSecurity = Field(SmtpSecurity.STARTTLS, description="none, starttls or tls")
    smtp_timeout_seconds: float = Field(10.0, gt=0, description="timeout of one SMTP connection")
    engineer_email: str | None = Field(None, description="who receives the reports")
    from_email: str = Field("amos@localhost", description="sender address of the reports")
    email_outcomes: Outcomes = Field(default_factory=list, description="outcomes that are e-mailed" + _OUTCOMES)
    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming-webhook URL; empty: no Slack")
    slack_outcomes: Outcomes = Field(default_factory=list, description="outcomes posted to Slack" + _OUTCOMES)
    webhook_url: str | None = Field(None, description="generic webhook receiving each report as JSON")
    webhook_secret: SecretStr | None = Field(None, description="HMAC key signing the webhook body")
    webhook_outcomes: Outcomes = Field(default_factory=list, description="outcomes sent to the webhook" + _OUTCOMES)
    outbox_retry_hours: float = Field(24.0, gt=0, description="undelivered notifications are retried this long")

    # --- service
    http_bind_address: str = Field("0.0.0.0", description="address of the /healthz, /readyz, /metrics server")
    http_port: int = Field(8080, ge=0, le=65535, description="port of that server; 0 picks a free one")
    log_json: bool = Field(False, description="JSON log lines instead of plain text")
    state_namespace: str | None = Field(
        None, description="where journal, snapshots and counts live; own_namespace when empty"
    )
    leader_election: bool = Field(True, description="elect one acting replica through a Lease")
    lease_name: str = Field("amos-leader", description="name of that Lease")

    @field_validator("engineer_email", "from_email")
    @classmethod
    def _looks_like_mail(cls, value: str | None) -> str | None:
        if value is not None and "@" not in value:
            raise ValueError("must be an e-mail address")
        return value

    @field_validator("webhook_url", "openai_base_url", "gemini_base_url")
    @classmethod
    def _looks_like_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("http_bind_address")
    @classmethod
    def _bindable(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOST_NAME.match(value):
                raise ValueError("must be an IP address or a host name") from None
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


class LoadedConfig(BaseModel):
    """Valid settings, where they came from, and what looked wrong but did not stop start-up."""

    settings: Settings
    path: Path | None = None
    warnings: list[str] = Field(default_factory=list)


def env_names(field: str) -> list[str]:
    """The environment variables that set `field`: `AMOS_<FIELD>`, or its aliases (`GOOGLE_API_KEY`)."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices if str(choice).isupper()]
    return [f"{ENV_PREFIX}{field}".upper()]


def _file_keys() -> dict[str, str]:
    """Accepted config-file key -> field (field names and their aliases)."""
    keys = {name: name for name in Settings.model_fields}
    for name in Settings.model_fields:
        keys.update({alias.lower(): name for alias in env_names(name)})
    return keys


def _env_fields() -> dict[str, str]:
    return {env: name for name in Settings.model_fields for env in env_names(name)}


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not {type(data).__name__}")
    return data


def _config_path(path: Path | None) -> Path | None:
    if path is None and os.environ.get("AMOS_CONFIG"):
        path = Path(os.environ["AMOS_CONFIG"])
    if path is None and Path("config.yaml").exists():
        path = Path("config.yaml")
    return path


def load_config(path: Path | None = None, **overrides: Any) -> LoadedConfig:
    """Settings from `path` (or `$AMOS_CONFIG`, or ./config.yaml when present), the environment and `overrides`.

    Raises `ConfigError` with every problem found; names it does not know become warnings.
    """
    path = _config_path(path)
    file_values = _read_yaml(path) if path is not None else {}
    warnings: list[str] = []
    env_fields = _env_fields()
    present_env = {name.upper() for name in os.environ}
    for name in sorted(present_env):
        if name.startswith(ENV_PREFIX) and name not in env_fields and name not in OTHER_AMOS_VARIABLES:
            warnings.append(f"unknown environment variable {name} ignored{_did_you_mean(name, sorted(env_fields))}")
    file_keys = _file_keys()
    from_file: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value in file_values.items():
        field = file_keys.get(str(key).lower())
        if field is None:
            hint = _did_you_mean(str(key), sorted(Settings.model_fields))
            warnings.append(f"unknown key '{key}' in {path} ignored{hint}")
            continue
        if any(env in present_env for env in env_names(field)):
            continue  # the environment wins over the file
        from_file[field] = value
        sources[field] = f"'{key}' in {path}"
    for field in Settings.model_fields:
        for env in env_names(field):
            if env in present_env:
                sources[field] = env
    for field in overrides:
        sources[field] = f"--{field.replace('_', '-')}"
    try:
        settings = Settings(**{**from_file, **overrides})
    except ValidationError as error:
        raise ConfigError(*(_describe(problem, sources) for problem in error.errors())) from error
    errors, cross_warnings = cross_check(settings, sources)
    if errors:
        raise ConfigError(*errors)
    return LoadedConfig(settings=settings, path=path, warnings=warnings + cross_warnings)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """`load_config(...).settings`, for callers that do not show warnings."""
    return load_config(path, **overrides).settings


_SECRET_FIELDS = frozenset(name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation))


def _describe(problem: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    location = [str(part) for part in problem["loc"]]
    field = _file_keys().get(location[0].lower(), location[0]) if location else "settings"
    source = _label(field, sources) if field in Settings.model_fields else field
    item = f"[{']['.join(location[1:])}]" if len(location) > 1 else ""
    value = problem.get("input")
    shown = "" if isinstance(value, dict) or field in _SECRET_FIELDS else f" (got {value!r})"
    return f"{source}{item}: {problem['msg']}{shown}"


def _label(field: str, sources: Mapping[str, str]) -> str:
    return sources.get(field) or env_names(field)[0]


def cross_check(settings: Settings, sources: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Combinations of valid settings that cannot work (errors) or probably do not do what was meant (warnings)."""
    sources = sources or {}
    errors: list[str] = []
    warnings: list[str] = []

    def name(field: str) -> str:
        return _label(field, sources)

    if settings.smtp_host and not settings.engineer_email:
        errors.append(f"{name('smtp_host')} is set but {name('engineer_email')} is not: reports would not be mailed")
    if settings.engineer_email and not settings.smtp_host:
        warnings.append(f"{name('engineer_email')} is set but {name('smtp_host')} is not: no e-mail will be sent")
    if settings.smtp_username and settings.smtp_password is None:
        errors.append(f"{name('smtp_username')} is set but {name('smtp_password')} is not")
    if settings.smtp_password is not None and not settings.smtp_username:
        warnings.append(f"{name('smtp_password')} is set but {name('smtp_username')} is not: it is not used")
    if settings.smtp_host and settings.smtp_port == 465 and settings.smtp_security != SmtpSecurity.TLS:
        warnings.append(f"{name('smtp_port')} 465 is implicit TLS: set {name('smtp_security')} to tls")
    if settings.smtp_username and settings.smtp_security == SmtpSecurity.NONE and settings.smtp_host not in _LOOPBACK:
        warnings.append(f"{name('smtp_security')} is none: the SMTP password would cross the network unencrypted")
    provider = settings.model_provider
    if provider is ModelProvider.GEMINI and settings.google_api_key is None and not settings.use_vertexai:
        errors.append(
            f"{name('model_provider')} is gemini but neither GOOGLE_API_KEY nor GOOGLE_GENAI_USE_VERTEXAI is set"
        )
    if (
        settings.use_vertexai
        and not settings.google_cloud_project
        and provider in (ModelProvider.AUTO, ModelProvider.GEMINI)
    ):
        errors.append(f"{name('use_vertexai')} needs {name('google_cloud_project')}")
    if provider is ModelProvider.OPENAI and settings.openai_base_url is None and settings.openai_api_key is None:
        errors.append(
            f"{name('model_provider')} is openai but neither {name('openai_base_url')} "
            f"nor {name('openai_api_key')} is set"
        )
    if settings.webhook_secret is not None and not settings.webhook_url:
        warnings.append(f"{name('webhook_secret')} is set but {name('webhook_url')} is not: it is not used")
    for channel, configured in (
        ("email", settings.smtp_host),
        ("slack", settings.slack_webhook_url),
        ("webhook", settings.webhook_url),
    ):
        if getattr(settings, f"{channel}_outcomes") and not configured:
            warnings.append(f"{name(f'{channel}_outcomes')} is set but the {channel} channel is not configured")
    overlap = sorted(set(settings.namespaces) & set(settings.excluded_namespaces))
    if overlap:
        warnings.append(
            f"{name('namespaces')} and {name('excluded_namespaces')} both list {', '.join(overlap)}: excluded wins"
        )
    return errors, warnings


_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})

_SECTIONS = {
    "kubeconfig": "cluster and scope",
    "aggregation_window_seconds": "detection",
    "mode_default": "remediation guard rails",
    "model_provider": "model",
    "smtp_host": "notifications",
    "http_bind_address": "service",
}


def example_config() -> str:
    """The text of `config.example.yaml`: every setting, its default, what it does and its variable."""
    defaults = Settings.model_construct().model_dump(mode="json")
    lines = [
        "# AMOS configuration: every setting with its default. Copy to config.yaml (or point AMOS_CONFIG at it)",
        "# and keep only what you change. Environment variables win over this file; each setting's variable",
        "# is named in its comment. Lists may be given to a variable as comma-separated text (AMOS_NAMESPACES=shop,web).",
        "# Generated from core/config.py:Settings by core.config.example_config(); tests fail when it drifts.",
    ]
    for name, info in Settings.model_fields.items():
        if name in _SECTIONS:
            lines += ["", f"# --- {_SECTIONS[name]}"]
        lines.append(f"# {info.description} ({', '.join(env_names(name))})")
        lines.append(f"{name}: {json.dumps(defaults[name])}")  # JSON values are valid YAML
    return "\n".join(lines) + "\n"
