"""What a container "does" in the lab, decided from its spec alone.

The lab has no container runtime; instead every container runs a pretend program
whose behaviour follows documented, realistic rules. A fault comes from the spec
(an image tag that does not exist, a bad flag, an unreachable database URL, a
memory limit below what the program needs, a missing ConfigMap), so fixing the
spec really fixes the pod. This module is pure: no cluster, no clock.

Rules (first match wins):
- image tag matching `MISSING_TAG` (e.g. `:doesnotexist`, `:v9.9.9-missing`) -> the pull fails;
- a ConfigMap/Secret (or key) referenced by env/envFrom that does not exist, and is not optional
  -> CreateContainerConfigError;
- image tag containing `crash` -> the release has a bug: a stack trace, exit 1;
- an argument `--bad...`/`--invalid...`/`--unknown...` -> "unknown flag", exit 2;
- an env value pointing at a `.invalid` host -> "connection refused"/"no such host", exit 1;
- `LAB_EXIT_CODE=<n>` (n != 0) -> exits with n after a short run (a failing batch job);
- `LAB_MEMORY_MI=<n>` above the memory limit -> OOMKilled (exit 137);
- otherwise: starts, becomes ready, and (for a Job or an init container, or with `LAB_RUN_SECONDS`)
  completes with 0.

Probes (`answer_probe`): a running program listens on every port its container declares
(`ports[].containerPort`, or a named port through `ports[].name`) and answers HTTP 200 on
`HEALTH_PATHS`, 404 elsewhere. httpGet succeeds on a declared port and one of those paths;
tcpSocket and grpc succeed on a declared port; exec always succeeds. Anything else fails with
the kubelet's own probe output (connection refused, status code 404, unknown named port).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

MISSING_TAG = re.compile(r":[^/:@]*(doesnotexist|does-not-exist|missing|nonexistent|notfound)[^/:@]*$", re.IGNORECASE)
BAD_FLAG = re.compile(r"^--(bad|invalid|unknown)[\w-]*", re.IGNORECASE)
INVALID_HOST = re.compile(r"(?:[a-z0-9-]+\.)+invalid\b", re.IGNORECASE)
DEFAULT_MEMORY_MI = 32
HEALTH_PATHS = frozenset({"/", "/healthz", "/readyz", "/livez", "/health", "/ready", "/metrics"})

_QUANTITY = re.compile(r"^([0-9.]+)([A-Za-z]*)$")
_UNITS = {
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "m": 1e-3,
}


class Fate(StrEnum):
    PULL_FAILS = "pull_fails"
    CONFIG_ERROR = "config_error"
    CRASHES = "crashes"
    OOM = "oom"
    RUNS = "runs"


class Role(StrEnum):
    """What the container is for, which decides whether a healthy program ends by itself."""

    SERVICE = "service"  # an app container of a long-running pod, or a sidecar
    BATCH = "batch"  # an app container of a pod that runs to completion (a Job's pod)
    INIT = "init"  # a regular init container: it prepares the pod, then exits 0


class ProbeKind(StrEnum):
    STARTUP = "Startup"
    LIVENESS = "Liveness"
    READINESS = "Readiness"


class ProbeAnswer(BaseModel, frozen=True):
    ok: bool
    output: str = ""  # what the kubelet prints after "<kind> probe failed: "
    errored: bool = False  # the probe could not even run (the kubelet says "probe errored")


class Behaviour(BaseModel, frozen=True):
    fate: Fate
    exit_code: int = 0
    reason: str = ""  # kubelet reason for the waiting/terminated state
    message: str = ""
    log_lines: tuple[str, ...] = ()
    run_seconds: float | None = None  # a program that finishes by itself (batch)


def parse_quantity_bytes(value: str) -> float:
    match = _QUANTITY.match(value.strip())
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _env_value(container: dict[str, Any], name: str) -> str | None:
    for item in container.get("env") or []:
        if item.get("name") == name and "value" in item:
            return str(item["value"])
    return None


def _program_name(image: str) -> str:
    return image.rsplit("/", 1)[-1].split(":", 1)[0].split("@", 1)[0] or "app"


def _missing_reference(container: dict[str, Any], exists: Callable[[str, str, str | None], bool]) -> str | None:
    """Return the kubelet's message for the first missing ConfigMap/Secret reference, if any."""
    for source in container.get("envFrom") or []:
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(key)
            if ref and not ref.get("optional") and not exists(kind, ref["name"], None):
                return f'{kind} "{ref["name"]}" not found'
    for item in container.get("env") or []:
        value_from = item.get("valueFrom") or {}
        for kind, key in (("configmap", "configMapKeyRef"), ("secret", "secretKeyRef")):
            ref = value_from.get(key)
            if not ref or ref.get("optional"):
                continue
            if not exists(kind, ref["name"], None):
                return f'{kind} "{ref["name"]}" not found'
            if not exists(kind, ref["name"], ref["key"]):
                label = "ConfigMap" if kind == "configmap" else "Secret"
                return f"couldn't find key {ref['key']} in {label} {ref['name']}"
    return None


def decide(
    container: dict[str, Any],
    *,
    role: Role,
    exists: Callable[[str, str, str | None], bool],
) -> Behaviour:
    """Decide what `container` does; `exists(kind, name, key)` answers whether a ConfigMap/Secret (key) exists."""
    image = container.get("image", "")
    program = _program_name(image)
    if MISSING_TAG.search(image):
        return Behaviour(
            fate=Fate.PULL_FAILS,
            reason="ErrImagePull",
            message=(
                f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": {image}: not found'
            ),
        )
    missing = _missing_reference(container, exists)
    if missing is not None:
        return Behaviour(fate=Fate.CONFIG_ERROR, reason="CreateContainerConfigError", message=missing)
    arguments = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    env_values = [str(item.get("value", "")) for item in container.get("env") or []]
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else "latest"
    if "crash" in tag.lower():
        return Behaviour(
            fate=Fate.CRASHES,
            exit_code=1,
            reason="Error",
            log_lines=(
                f"{program} {tag} starting",
                "loading configuration from /etc/app/config.yaml",
                "Traceback (most recent call last):",
                f'  File "/app/{program}/server.py", line 88, in <module>',
                "    app = create_app(settings)",
                f'  File "/app/{program}/server.py", line 41, in create_app',
                "    routes = settings.routes.items()",
                "AttributeError: 'NoneType' object has no attribute 'items'",
            ),
        )
    bad_flag = next((a for a in arguments if BAD_FLAG.match(a)), None)
    if bad_flag is not None:
        flag = bad_flag.split("=", 1)[0]
        return Behaviour(
            fate=Fate.CRASHES,
            exit_code=2,
            reason="Error",
            log_lines=(
                f"Error: unknown flag: {flag}",
                f"Usage: {program} [flags]",
                '      --listen string   address to listen on (default ":8080")',
                '      --log-level string   log level (default "info")',
            ),
        )
    invalid_host = next((m.group(0) for v in env_values if (m := INVALID_HOST.search(v))), None)
    if invalid_host is not None:
        return Behaviour(
            fate=Fate.CRASHES,
            exit_code=1,
            reason="Error",
            log_lines=(
                f"{program} starting",
                f"connecting to database at {invalid_host}:5432",
                f"dial tcp: lookup {invalid_host}: no such host; connection refused",
                "retrying in 1s (attempt 2/3)",
                f"dial tcp: lookup {invalid_host}: no such host; connection refused",
                "fatal: could not connect to the database after 3 attempts",
            ),
        )
    exit_code = int(_env_value(container, "LAB_EXIT_CODE") or 0)
    if exit_code != 0:
        return Behaviour(
            fate=Fate.CRASHES,
            exit_code=exit_code,
            reason="Error",
            run_seconds=float(_env_value(container, "LAB_RUN_SECONDS") or 1),
            log_lines=(
                f"{program} batch run starting",
                "processing 1200 records",
                "record 417: upstream returned HTTP 503 Service Unavailable",
                f"batch failed: 1 error(s); exiting with status {exit_code}",
            ),
        )
    need_mi = float(_env_value(container, "LAB_MEMORY_MI") or DEFAULT_MEMORY_MI)
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if limit is not None and parse_quantity_bytes(str(limit)) < need_mi * 1024**2:
        return Behaviour(
            fate=Fate.OOM,
            exit_code=137,
            reason="OOMKilled",
            log_lines=(
                f"{program} starting with cache size {int(need_mi)}Mi",
                f"warming cache: {int(need_mi * 0.5)}Mi allocated",
                f"warming cache: {int(need_mi * 0.8)}Mi allocated",
                f"WARN memory usage above limit {limit}: OOM likely",
            ),
        )
    run_seconds = _env_value(container, "LAB_RUN_SECONDS")
    completes = role is not Role.SERVICE
    work = {
        Role.SERVICE: ("listening on :8080", "ready"),
        Role.BATCH: ("processing 1200 records", "done: 1200 records processed"),
        Role.INIT: ("preparing /work for the application", "init done"),
    }[role]
    return Behaviour(
        fate=Fate.RUNS,
        run_seconds=float(run_seconds) if run_seconds else (1.0 if completes else None),
        log_lines=(f"{program} {tag} starting", "configuration loaded", *work),
    )


def _declared_port(port: int | str, container: dict[str, Any]) -> int | None:
    """The port number a probe's `port` means, if the container declares it (by number or by name)."""
    for declared in container.get("ports") or []:
        if declared.get("containerPort") == port or (isinstance(port, str) and declared.get("name") == port):
            return int(declared["containerPort"])
    return None


def answer_probe(probe: dict[str, Any], container: dict[str, Any], pod_ip: str) -> ProbeAnswer:
    """What a running program answers to `probe` (a container's liveness/readiness/startup probe)."""
    if "exec" in probe:
        return ProbeAnswer(ok=True)
    handler = probe.get("httpGet") or probe.get("tcpSocket") or probe.get("grpc") or {}
    port = handler.get("port", 0)
    if isinstance(port, str) and not port.isdigit() and _declared_port(port, container) is None:
        return ProbeAnswer(
            ok=False, errored=True, output=f'couldn\'t find port: {port} in container "{container["name"]}"'
        )
    number = int(port) if isinstance(port, str) and port.isdigit() else port
    listening = _declared_port(number, container) is not None
    host = handler.get("host") or pod_ip
    address = f"{host}:{_declared_port(number, container) or number}"
    refused = f"dial tcp {address}: connect: connection refused"
    if "httpGet" in probe:
        path = handler.get("path") or "/"
        url = f"{str(handler.get('scheme') or 'HTTP').lower()}://{address}{path}"
        if not listening:
            return ProbeAnswer(ok=False, output=f'Get "{url}": {refused}')
        if path.split("?", 1)[0] not in HEALTH_PATHS:
            return ProbeAnswer(ok=False, output="HTTP probe failed with statuscode: 404")
        return ProbeAnswer(ok=True)
    if "grpc" in probe and not listening:
        return ProbeAnswer(ok=False, output=f'timeout: failed to connect service "{address}" within 1s')
    return ProbeAnswer(ok=listening, output="" if listening else refused)
