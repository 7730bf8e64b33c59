"""`python main.py diagnose deploy/web -n shop`: detect and diagnose one workload now, change nothing.

The target is written as with kubectl (`deploy/web`, `deployments/web`, `sts/db`,
`pod/web-7d9c-x2x`, or `deploy web`); a pod stands for the workload that owns it. A
target that does not exist is an error (exit 2), distinct from a healthy one (exit 0);
a fault found is exit 1.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Literal

from kubernetes import client, config
from pydantic import BaseModel, Field

from agents.context import build_context
from agents.session import run_session
from core import k8s
from core.actions import Diagnosis
from core.config import Settings
from core.models import Incident, IncidentState, ObjectRef
from core.redaction import Redactor
from monitors.detector import FaultDetector
from monitors.watch import Watcher
from orchestrator.knowngood_store import KnownGoodStore
from service.exitcodes import ExitCode
from service.kube import ClusterUnavailable, connect
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess
from tools.read import ReadTools

SYNC_TIMEOUT_SECONDS = 30.0


class TargetError(Exception):
    """The target cannot be diagnosed as written (bad syntax, not found): exit 2."""


class DiagnosedIncident(BaseModel):
    title: str
    fault: str
    affected: int
    diagnosis: Diagnosis | None = None
    no_diagnosis_reason: str | None = None
    model: str = ""
    model_calls: int = 0


class DiagnoseResult(BaseModel):
    """What `diagnose` found; `-o json` prints this model."""

    requested: ObjectRef
    workload: ObjectRef = Field(description="the workload diagnosed: the requested object, or a pod's owner")
    status: Literal["healthy", "fault"]
    incidents: list[DiagnosedIncident] = Field(default_factory=list)


def parse_target(words: list[str]) -> tuple[str, str]:
    """(`Deployment`, `web`) from `["deploy/web"]` or `["deployments", "web"]`."""
    if len(words) == 1 and "/" in words[0]:
        kind_text, _, name = words[0].partition("/")
    elif len(words) == 2 and "/" not in words[0]:
        kind_text, name = words
    else:
        raise TargetError(f"expected TYPE/NAME or TYPE NAME (e.g. deploy/web), got {' '.join(words)!r}")
    kind = k8s.canonical_kind(kind_text)
    if kind not in k8s.READABLE_KINDS or not name or "/" in name:
        known = "deploy, sts, ds, cj, job, rs, pod (singular, plural or full kind names)"
        raise TargetError(f"cannot diagnose {' '.join(words)!r}: the type must be one of {known}")
    return kind, name


def default_namespace(settings: Settings) -> str:
    """The kubeconfig context's namespace, as kubectl uses it; `default` otherwise."""
    try:
        kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
        _, current = config.list_kube_config_contexts(kubeconfig)  # type: ignore[no-untyped-call]
    except Exception:  # noqa: BLE001 - no kubeconfig (in-cluster): kubectl's default applies
        return "default"
    return str((current or {}).get("context", {}).get("namespace") or "default")


def _kind_label(kind: str) -> str:
    return kind.lower()


def resolve(access: ClusterAccess, kind: str, namespace: str, name: str) -> tuple[ObjectRef, set[ObjectRef]]:
    """The workload to diagnose and every object whose incidents belong to it (a CronJob's Jobs, say)."""
    obj = _get(access, kind, namespace, name)
    while kind in k8s.OWNED_KINDS:
        owner = objects.controller_ref(obj)
        owner_kind = str((owner or {}).get("kind", ""))
        if owner is None or owner_kind not in k8s.READABLE_KINDS or (kind == "Job" and owner_kind != "CronJob"):
            break
        kind, name = owner_kind, str(owner["name"])
        obj = _get(access, kind, namespace, name)
    workload = ObjectRef(kind=kind, namespace=namespace, name=name)
    subjects = {workload}
    if kind == "CronJob":
        for job in access.list_objects("Job", namespace):
            owner = objects.controller_ref(job)
            if owner is not None and owner.get("kind") == "CronJob" and owner.get("name") == name:
                subjects.add(ObjectRef(kind="Job", namespace=namespace, name=objects.meta(job).get("name", "")))
    return workload, subjects


def _get(access: ClusterAccess, kind: str, namespace: str, name: str) -> dict[str, object]:
    try:
        return access.get(kind, namespace, name)
    except ApiCallError as error:
        if error.status == 404:
            if not _namespace_exists(access, namespace):
                raise TargetError(f"namespace {namespace!r} not found") from error
            raise TargetError(f'{_kind_label(kind)} "{name}" not found in namespace {namespace!r}') from error
        if error.status in (401, 403):
            raise ClusterUnavailable(f"reading {_kind_label(kind)} {name}: {error.detail}") from error
        raise


def _namespace_exists(access: ClusterAccess, namespace: str) -> bool:
    try:
        access.core.read_namespace(namespace, _request_timeout=10)
    except client.ApiException as error:
        return bool(error.status != 404)  # forbidden: we cannot tell, so do not claim it is missing
    return True


def detect(settings: Settings, api: client.ApiClient, subjects: set[ObjectRef]) -> list[Incident]:
    """The open incidents on `subjects`, from one list-and-watch of their namespace."""
    found: list[Incident] = []
    watcher = Watcher(settings, api, FaultDetector(settings, found.append))
    watcher.start()
    try:
        if not watcher.wait_synced(SYNC_TIMEOUT_SECONDS):
            raise ClusterUnavailable(f"the watches did not sync within {SYNC_TIMEOUT_SECONDS:.0f} s")
        time.sleep(settings.aggregation_window_seconds + 1.0)
    finally:
        watcher.stop()
    return [i for i in found if i.state is IncidentState.OPEN and i.workload in subjects]


def diagnose_target(settings: Settings, words: list[str], namespace: str | None) -> DiagnoseResult:
    kind, name = parse_target(words)
    namespace = namespace or default_namespace(settings)
    settings = settings.model_copy(update={"namespaces": [namespace], "dry_run": True})
    api = connect(settings.kubeconfig)
    access = ClusterAccess(api, settings, Redactor())
    workload, subjects = resolve(access, kind, namespace, name)
    requested = ObjectRef(kind=kind, namespace=namespace, name=name)
    incidents = detect(settings, api, subjects)
    read_tools = ReadTools(access, known_good=KnownGoodStore(access))  # the history the safety loop reads
    diagnosed = []
    for incident in incidents:
        context = build_context(incident, read_tools, history=[])
        result = asyncio.run(run_session(incident, context, read_tools, None, settings))
        diagnosed.append(
            DiagnosedIncident(
                title=incident.title,
                fault=incident.kind.value,
                affected=len(incident.affected),
                diagnosis=result.diagnosis,
                no_diagnosis_reason=result.escalation_reason if result.diagnosis is None else None,
                model=result.model,
                model_calls=result.model_calls,
            )
        )
    return DiagnoseResult(
        requested=requested, workload=workload, status="fault" if diagnosed else "healthy", incidents=diagnosed
    )


def print_text(result: DiagnoseResult) -> None:
    workload = result.workload
    via = f" (owner of {result.requested.kind.lower()}/{result.requested.name})" if workload != result.requested else ""
    if result.status == "healthy":
        print(f"healthy: no fault detected on {workload.kind}/{workload.name}{via} in namespace {workload.namespace}")
        return
    for incident in result.incidents:
        print(f"{incident.title}{via}  ({incident.affected} affected)")
        d = incident.diagnosis
        if d is None:
            print(f"  no diagnosis: {incident.no_diagnosis_reason}")
            continue
        print(f"  root cause ({d.category}, confidence {d.confidence:.0%}): {d.root_cause}")
        for line in d.evidence:
            print(f"  evidence: {line}")
        for action in d.proposed_actions:
            print(f"  would do: {action.summary()}")
        if d.escalate:
            print(f"  needs a human: {d.escalation_reason}")
            for step in d.human_steps:
                print(f"    - {step}")
        print(f"  model: {incident.model} ({incident.model_calls} calls)")


def diagnose(settings: Settings, words: list[str], namespace: str | None, *, output: str = "text") -> int:
    """`python main.py diagnose`: 0 healthy, 1 fault found, 2 bad or unknown target (raises ClusterUnavailable)."""
    try:
        result = diagnose_target(settings, words, namespace)
    except TargetError as error:
        print(f"amos: {error}", file=sys.stderr)
        return ExitCode.USAGE
    if output == "json":
        print(result.model_dump_json(indent=2))
    else:
        print_text(result)
    return ExitCode.OK if result.status == "healthy" else ExitCode.FAULT
