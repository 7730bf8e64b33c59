"""`python main.py check`: find at install time what would otherwise fail at the first incident.

Checks every permission the code uses (one SelfSubjectAccessReview per resource, verb
and namespace in scope, from the one table `PERMISSIONS`), that the state namespace is
writable (a server-side dry-run create), that the SMTP server answers and accepts the
credentials, and that the model answers one request carrying the diagnosis agent's full
tool declarations and output schema. `run` performs the same checks at start and refuses
to start on a fatal one.
"""

from __future__ import annotations

import asyncio
import logging
import smtplib
import ssl
import sys
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import Any

import urllib3
from kubernetes import client
from pydantic import BaseModel, Field

from core.config import LoadedConfig, ModelProvider, Settings, SmtpSecurity, env_names
from core.redaction import Redactor
from monitors.scope import watched_namespaces
from service.exitcodes import ExitCode
from service.kube import ClusterUnavailable, connect

log = logging.getLogger("amos.check")

REQUEST_TIMEOUT_SECONDS = 10.0
PROBE_CONFIGMAP = "amos-preflight-check"


class Severity(StrEnum):
    FATAL = "fatal"  # AMOS cannot do its job: `run` refuses to start
    WARNING = "warning"  # something will be missing or degraded
    OK = "ok"


class Finding(BaseModel):
    area: str = Field(description="permission, state, smtp, model, config")
    severity: Severity
    message: str

    def line(self) -> str:
        return f"{self.severity.value}: {self.area}: {self.message}"


class CheckReport(BaseModel):
    """Every finding; `-o json` prints this model."""

    findings: list[Finding] = Field(default_factory=list)

    @property
    def fatal(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.FATAL]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]


# --- permissions ---------------------------------------------------------------------------------


class Where(StrEnum):
    WATCHED = "watched"  # every namespace AMOS watches and acts in (all namespaces when none are listed)
    OWN = "own"  # own_namespace (the leader Lease)
    STATE = "state"  # the state namespace (ledger, snapshots, journal, circuit breaker)
    CLUSTER = "cluster"  # cluster-scoped objects


class Need(StrEnum):
    READ = "read"  # detection and diagnosis: fatal when missing
    WRITE = "write"  # remediation: fatal unless dry-run or observe mode
    OPTIONAL = "optional"  # a degraded feature: a warning


class Permission(BaseModel):
    group: str
    resource: str
    subresource: str = ""
    verbs: tuple[str, ...]
    where: Where
    need: Need
    purpose: str

    @property
    def label(self) -> str:
        name = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{name}.{self.group}" if self.group else name


_READ = ("get", "list", "watch")
PERMISSIONS: tuple[Permission, ...] = (
    Permission(
        group="",
        resource="pods",
        verbs=_READ,
        where=Where.WATCHED,
        need=Need.READ,
        purpose="watch pods and detect faults",
    ),
    Permission(
        group="",
        resource="pods",
        subresource="log",
        verbs=("get",),
        where=Where.WATCHED,
        need=Need.READ,
        purpose="read the logs of failing containers",
    ),
    Permission(
        group="",
        resource="pods",
        subresource="eviction",
        verbs=("create",),
        where=Where.WATCHED,
        need=Need.WRITE,
        purpose="evict a stuck pod (PodDisruptionBudgets hold)",
    ),
    Permission(
        group="",
        resource="events",
        verbs=("get", "list", "watch"),
        where=Where.WATCHED,
        need=Need.READ,
        purpose="read the Events of failing objects",
    ),
    Permission(
        group="",
        resource="events",
        verbs=("create",),
        where=Where.WATCHED,
        need=Need.OPTIONAL,
        purpose="record what AMOS did as Events on the workload",
    ),
    Permission(
        group="",
        resource="configmaps",
        verbs=("get", "list"),
        where=Where.WATCHED,
        need=Need.READ,
        purpose="check the ConfigMaps a workload references; snapshot them",
    ),
    Permission(
        group="",
        resource="secrets",
        verbs=("get",),
        where=Where.WATCHED,
        need=Need.OPTIONAL,
        purpose="check which Secret keys exist (values are only used to redact them)",
    ),
    *(
        Permission(
            group="apps",
            resource=resource,
            verbs=_READ,
            where=Where.WATCHED,
            need=Need.READ,
            purpose=f"watch and diagnose {resource}",
        )
        for resource in ("deployments", "statefulsets", "daemonsets", "replicasets", "controllerrevisions")
    ),
    *(
        Permission(
            group="apps",
            resource=resource,
            verbs=("patch", "update"),
            where=Where.WATCHED,
            need=Need.WRITE,
            purpose=f"fix, roll back and restore {resource}",
        )
        for resource in ("deployments", "statefulsets", "daemonsets")
    ),
    Permission(
        group="batch",
        resource="jobs",
        verbs=_READ,
        where=Where.WATCHED,
        need=Need.READ,
        purpose="watch and diagnose jobs",
    ),
    Permission(
        group="batch",
        resource="jobs",
        verbs=("patch", "update"),
        where=Where.WATCHED,
        need=Need.WRITE,
        purpose="fix and restore jobs",
    ),
    Permission(
        group="batch",
        resource="cronjobs",
        verbs=_READ,
        where=Where.WATCHED,
        need=Need.READ,
        purpose="diagnose the cronjob owning a failed job",
    ),
    Permission(
        group="batch",
        resource="cronjobs",
        verbs=("patch", "update"),
        where=Where.WATCHED,
        need=Need.WRITE,
        purpose="fix and roll back cronjobs",
    ),
    Permission(
        group="coordination.k8s.io",
        resource="leases",
        verbs=("get", "create", "update"),
        where=Where.STATE,
        need=Need.READ,
        purpose="leader election among replicas",
    ),
    Permission(
        group="",
        resource="secrets",
        verbs=("get", "list", "create", "update", "delete"),
        where=Where.STATE,
        need=Need.READ,
        purpose="keep snapshots, known-good history, proposals and the key that signs AMOS's records",
    ),
    Permission(
        group="",
        resource="configmaps",
        verbs=("get", "list", "watch", "create", "update", "patch", "delete"),
        where=Where.STATE,
        need=Need.READ,
        purpose="keep attempts, snapshots and the journal",
    ),
    Permission(
        group="",
        resource="namespaces",
        verbs=("get",),
        where=Where.CLUSTER,
        need=Need.READ,
        purpose="find the state namespace at start",
    ),
)


def _namespaces(where: Where, settings: Settings) -> list[str]:
    if where is Where.WATCHED:
        watched = watched_namespaces(settings)
        return [""] if watched is None else watched  # "" asks for every namespace
    if where is Where.OWN:
        return [settings.own_namespace] if settings.leader_election else []
    if where is Where.STATE:
        return [settings.store_namespace]
    return [""]


def _severity(need: Need, settings: Settings) -> Severity:
    if need is Need.OPTIONAL:
        return Severity.WARNING
    if need is Need.WRITE and (settings.dry_run or settings.mode_default == "observe"):
        return Severity.WARNING
    return Severity.FATAL


def allowed(api: client.ApiClient, permission: Permission, verb: str, namespace: str) -> tuple[bool, str]:
    """Ask the API server whether our credentials may do `verb` (SelfSubjectAccessReview)."""
    review = client.V1SelfSubjectAccessReview(
        spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                group=permission.group,
                resource=permission.resource,
                subresource=permission.subresource or None,
                verb=verb,
                namespace=namespace or None,
            )
        )
    )
    answer = client.AuthorizationV1Api(api).create_self_subject_access_review(
        review, _request_timeout=REQUEST_TIMEOUT_SECONDS
    )
    status = answer.status
    if status is None:
        return False, "no status in the review"
    return bool(status.allowed), str(status.evaluation_error or status.reason or "")


def check_permissions(api: client.ApiClient, settings: Settings) -> list[Finding]:
    """One finding per missing (resource, verb), naming every namespace where it is missing."""
    findings: list[Finding] = []
    for permission in PERMISSIONS:
        for verb in permission.verbs:
            missing = [
                ns for ns in _namespaces(permission.where, settings) if not allowed(api, permission, verb, ns)[0]
            ]
            if not missing:
                continue
            where = ", ".join(ns or "all namespaces" for ns in missing)
            scope = "" if permission.where is Where.CLUSTER else f" in {'namespace ' if missing != [''] else ''}{where}"
            findings.append(
                Finding(
                    area="permission",
                    severity=_severity(permission.need, settings),
                    message=f"cannot {verb} {permission.label}{scope} (needed to {permission.purpose})",
                )
            )
    return findings


def check_state_namespace(api: client.ApiClient, settings: Settings) -> list[Finding]:
    """A server-side dry-run create of a ConfigMap where the ledger, snapshots and journal live."""
    namespace = settings.store_namespace
    core = client.CoreV1Api(api)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=PROBE_CONFIGMAP), data={"probe": "true"})
    try:
        core.create_namespaced_config_map(namespace, body, dry_run="All", _request_timeout=REQUEST_TIMEOUT_SECONDS)
    except client.ApiException as error:
        if error.status == 409:
            return []  # a leftover probe object: the namespace is writable
        if error.status == 404:
            return _state_namespace_missing(core, namespace)
        return [
            Finding(
                area="state",
                severity=Severity.FATAL,
                message=f"state namespace {namespace} is not writable: {error.status} {error.reason}",
            )
        ]
    return []


def _state_namespace_missing(core: client.CoreV1Api, namespace: str) -> list[Finding]:
    try:
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)),
            dry_run="All",
            _request_timeout=REQUEST_TIMEOUT_SECONDS,
        )
    except client.ApiException as error:
        return [
            Finding(
                area="state",
                severity=Severity.FATAL,
                message=f"state namespace {namespace} does not exist and cannot be created: "
                f"{error.status} {error.reason}",
            )
        ]
    return [
        Finding(
            area="state",
            severity=Severity.WARNING,
            message=f"state namespace {namespace} does not exist yet; AMOS will create it at start",
        )
    ]


# --- e-mail --------------------------------------------------------------------------------------


def check_smtp(settings: Settings, *, send_test_mail: bool = False) -> list[Finding]:
    """Connect, negotiate TLS as configured, log in; optionally send one test message."""
    if not settings.smtp_host:
        if settings.slack_webhook_url is None and not settings.webhook_url:
            return [
                Finding(
                    area="smtp",
                    severity=Severity.WARNING,
                    message="no notification channel configured: reports go to the log and Events only",
                )
            ]
        return []
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
    scrub = Redactor([password]) if password else Redactor()
    where = f"{settings.smtp_host}:{settings.smtp_port}"

    def problem(severity: Severity, text: str) -> list[Finding]:
        return [Finding(area="smtp", severity=severity, message=scrub.redact_text(f"{where}: {text}"))]

    try:
        _smtp_handshake(settings, password)
    except smtplib.SMTPAuthenticationError as error:
        return problem(Severity.FATAL, f"login as {settings.smtp_username} refused: {_smtp_reply(error)}")
    except smtplib.SMTPNotSupportedError:
        return problem(
            Severity.FATAL,
            f"the server does not offer STARTTLS; set {env_names('smtp_security')[0]} to tls (implicit TLS) or none",
        )
    except ssl.SSLError as error:
        return problem(
            Severity.FATAL,
            f"TLS failed ({error.reason or error}); check "
            f"{env_names('smtp_security')[0]} and {env_names('smtp_port')[0]}",
        )
    except smtplib.SMTPException as error:
        return problem(Severity.FATAL, f"SMTP error: {_smtp_reply(error)}")
    except OSError as error:
        return problem(Severity.WARNING, f"cannot reach the SMTP server: {error.strerror or error}")
    if send_test_mail:
        return _send_test_mail(settings, scrub, where)
    return []


def _smtp_handshake(settings: Settings, password: str) -> None:
    host, port, timeout = settings.smtp_host or "", settings.smtp_port, settings.smtp_timeout_seconds
    smtp: smtplib.SMTP
    if settings.smtp_security == SmtpSecurity.TLS:
        smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    else:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    try:
        smtp.ehlo()
        if settings.smtp_security == SmtpSecurity.STARTTLS:
            smtp.starttls(context=ssl.create_default_context())  # SMTPNotSupportedError when not offered
            smtp.ehlo()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, password)
        smtp.noop()
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()


def _smtp_reply(error: smtplib.SMTPException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        reply = error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else error.smtp_error
        return f"{error.smtp_code} {reply}"
    return str(error) or type(error).__name__


def _send_test_mail(settings: Settings, scrub: Redactor, where: str) -> list[Finding]:
    from notifications import Mailer, RenderedMessage, RetryPolicy

    cluster = f" for cluster {settings.cluster_name}" if settings.cluster_name else ""
    text = f"This is a test e-mail from `python main.py check --send-test-mail`{cluster}. No action is needed."
    message = RenderedMessage(subject=f"[AMOS] test e-mail{cluster}", text=text, html=f"<p>{text}</p>")
    result = Mailer(settings, RetryPolicy(attempts=1)).send(message)
    if not result.delivered:
        return [
            Finding(
                area="smtp",
                severity=Severity.FATAL,
                message=scrub.redact_text(f"{where}: the test e-mail was not delivered: {result.error}"),
            )
        ]
    if result.error:
        return [Finding(area="smtp", severity=Severity.WARNING, message=f"{where}: test e-mail: {result.error}")]
    return [
        Finding(
            area="smtp", severity=Severity.OK, message=f"test e-mail sent to {settings.engineer_email} through {where}"
        )
    ]


# --- model ---------------------------------------------------------------------------------------


class ModelProbeError(Exception):
    """The model did not answer the probe; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


async def probe_model(model: Any, tools: Sequence[Callable[..., Any]]) -> None:
    """One request with the diagnosis agent's tool declarations and output schema; raises ModelProbeError.

    The schema travels the way ADK sends it for this model: as a response schema where the
    provider accepts one beside tools, else as the `set_model_response` tool.
    """
    from google.adk.models.llm_request import LlmRequest
    from google.adk.tools.function_tool import FunctionTool
    from google.adk.tools.set_model_response_tool import SetModelResponseTool
    from google.genai import types

    from core.actions import Diagnosis

    request = LlmRequest(
        model=model.model,
        contents=[types.Content(role="user", parts=[types.Part.from_text(text="AMOS preflight check: reply OK.")])],
        config=types.GenerateContentConfig(system_instruction="This is a connectivity check. Reply with OK."),
    )
    request.append_tools([FunctionTool(function) for function in tools])
    if model.capabilities.output_schema_and_tools:
        request.set_output_schema(Diagnosis)
    else:
        request.append_tools([SetModelResponseTool(Diagnosis)])
    try:
        async for response in model.generate_content_async(request):
            if response.error_code:
                raise ModelProbeError(f"{response.error_code}: {response.error_message or ''}".strip())
            return
    except ModelProbeError:
        raise
    except Exception as error:  # the clients raise many types: keep the status and one line
        status = getattr(error, "code", None) or getattr(error, "status_code", None)
        text = " ".join(str(error).split())[:300] or type(error).__name__
        raise ModelProbeError(f"{type(error).__name__}: {text}", status if isinstance(status, int) else None) from error
    raise ModelProbeError("the model returned no response")


def check_model(settings: Settings, api: client.ApiClient) -> list[Finding]:
    provider = settings.resolved_provider()
    if provider is ModelProvider.OFFLINE:
        why = "model_provider is offline" if settings.model_provider is ModelProvider.OFFLINE else "no model key set"
        return [Finding(area="model", severity=Severity.OK, message=f"offline diagnoser ({why})")]
    from agents.models import build_model, model_label
    from core.config import ConfigError
    from tools.cluster import ClusterAccess
    from tools.read import ReadTools

    try:
        model = build_model(settings)
    except ConfigError as error:
        return [Finding(area="model", severity=Severity.FATAL, message=str(error))]
    tools = ReadTools(ClusterAccess(api, settings, Redactor())).as_functions()
    label = model_label(model)
    try:
        asyncio.run(asyncio.wait_for(probe_model(model, tools), timeout=settings.model_timeout_seconds))
    except TimeoutError:
        return [
            Finding(
                area="model",
                severity=Severity.WARNING,
                message=f"{label} did not answer within {settings.model_timeout_seconds:g} s",
            )
        ]
    except ModelProbeError as error:
        rejected = error.status is not None and 400 <= error.status < 500 and error.status != 429
        return [
            Finding(
                area="model",
                severity=Severity.FATAL if rejected else Severity.WARNING,
                message=f"{label} {'rejected' if rejected else 'failed'} the probe request: {error}",
            )
        ]
    return [Finding(area="model", severity=Severity.OK, message=f"{label} answered a request with the full tool set")]


# --- the command ---------------------------------------------------------------------------------


def preflight(
    settings: Settings, api: client.ApiClient, *, config_warnings: Sequence[str] = (), send_test_mail: bool = False
) -> CheckReport:
    """Every check; raises `ClusterUnavailable` when the API server stops answering or refuses a review."""
    findings = [Finding(area="config", severity=Severity.WARNING, message=w) for w in config_warnings]
    try:
        findings += check_permissions(api, settings)
        findings += check_state_namespace(api, settings)
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise ClusterUnavailable(f"the API server stopped answering during the check: {error}") from error
    except client.ApiException as error:  # a review itself refused (401: credentials expired)
        raise ClusterUnavailable(
            f"the API server refused a SelfSubjectAccessReview: {error.status} {error.reason}"
        ) from error
    findings += check_smtp(settings, send_test_mail=send_test_mail)
    findings += check_model(settings, api)
    return CheckReport(findings=findings)


def run_check(loaded: LoadedConfig, *, send_test_mail: bool = False, output: str = "text") -> int:
    """`python main.py check`: exit 0 when nothing is fatal, 2 otherwise (3 when the cluster is unreachable)."""
    settings = loaded.settings
    api = connect(settings.kubeconfig)
    report = preflight(settings, api, config_warnings=loaded.warnings, send_test_mail=send_test_mail)
    if output == "json":
        print(report.model_dump_json(indent=2))
    else:
        for finding in report.findings:
            print(finding.line())
        verdict = "failed" if report.fatal else "passed"
        print(f"check {verdict}: {len(report.fatal)} fatal, {len(report.warnings)} warning(s)", file=sys.stderr)
    return ExitCode.USAGE if report.fatal else ExitCode.OK


def start_allowed(settings: Settings, api: client.ApiClient) -> bool:
    """For `run`: log every finding; False when one is fatal (the caller exits with 2)."""
    report = preflight(settings, api)
    for finding in report.findings:
        level = {Severity.FATAL: logging.ERROR, Severity.WARNING: logging.WARNING}.get(finding.severity, logging.INFO)
        log.log(level, "preflight %s", finding.line())
    if report.fatal:
        log.error("not starting: %d fatal preflight problem(s); `python main.py check` lists them", len(report.fatal))
    return not report.fatal
