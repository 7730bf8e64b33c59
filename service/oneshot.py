"""`python main.py diagnose deployment/web -n shop`: detect and diagnose one workload now, change nothing."""

from __future__ import annotations

import asyncio
import time

from core.config import Settings
from core.models import Incident, IncidentState
from core.redaction import Redactor
from agents.context import build_context
from agents.session import run_session
from monitors.detector import FaultDetector
from monitors.watch import Watcher
from service.kube import connect
from tools.cluster import ClusterAccess
from tools.read import ReadTools

KINDS = {"deployment": "Deployment", "deploy": "Deployment", "job": "Job", "pod": "Pod"}


def diagnose(settings: Settings, target: str, namespace: str) -> int:
    kind_text, _, name = target.partition("/")
    kind = KINDS.get(kind_text.lower())
    if kind is None or not name:
        print(f"amos: expected kind/name with kind one of deployment, job, pod; got {target!r}")
        return 2
    settings = settings.model_copy(update={"namespaces": [namespace], "dry_run": True})
    api = connect(settings.kubeconfig)
    found: list[Incident] = []
    watcher = Watcher(settings, api, FaultDetector(settings, found.append))
    watcher.start()
    try:
        watcher.wait_synced(30)
        time.sleep(settings.aggregation_window_seconds + 1.0)
    finally:
        watcher.stop()
    mine = [i for i in found if i.state is IncidentState.OPEN and i.workload.kind == kind and i.workload.name == name]
    if not mine:
        print(f"no fault detected on {kind}/{name} in namespace {namespace}")
        return 0
    access = ClusterAccess(api, settings, Redactor())
    read_tools = ReadTools(access)
    for incident in mine:
        context = build_context(incident, read_tools, history=[])
        result = asyncio.run(run_session(incident, context, read_tools, None, settings))
        print(f"{incident.title}  ({len(incident.affected)} affected)")
        if result.diagnosis is None:
            print(f"  no diagnosis: {result.escalation_reason}")
            continue
        d = result.diagnosis
        print(f"  root cause ({d.category}, confidence {d.confidence:.0%}): {d.root_cause}")
        for line in d.evidence:
            print(f"  evidence: {line}")
        for action in d.proposed_actions:
            print(f"  would do: {action.model_dump_json(exclude_none=True)}")
        if d.escalate:
            print(f"  needs a human: {d.escalation_reason}")
            for step in d.human_steps:
                print(f"    - {step}")
        print(f"  model: {result.model} ({result.model_calls} calls)")
    return 0
