"""Run the scenario suite on the lab and print (and save) what AMOS did for each.

    python -m scenarios [--only NAME ...] [--json results/scenarios.json] [--kubeconfig K]

Each scenario gets its own namespace: healthy workloads first (awaited Ready), then
one injected fault, then AMOS (offline diagnoser unless a model is configured)
runs until it reports. Objects outside the faulty workloads are fingerprinted
before and after: AMOS must not have changed any of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from pydantic import BaseModel

from core.config import Settings, load_settings
from core.models import Incident, IncidentState
from core.report import IncidentReport, Outcome
from lab import build
from lab.cluster import LabCluster
from lab.workloads import create_namespace, rollout_complete, wait_for
from scenarios.catalog import SCENARIOS, Scenario
from service.app import AmosApp
from service.kube import connect

EXCLUDED_NAMESPACE = "scn-excluded"  # listed in the suite's excluded_namespaces
QUIET_SECONDS = 20.0  # how long "nothing happens" is watched for, where nothing must happen
REPORT_TIMEOUT_SECONDS = 240.0


class ScenarioResult(BaseModel):
    name: str
    namespace: str
    detected_seconds: float | None
    kinds_seen: list[str]
    right_diagnosis: bool | None
    outcome: str | None
    fixed_and_verified: bool
    mttr_seconds: float | None
    attempts: int
    rollbacks: int
    escalations: int
    outside_changes: list[str]
    passed: bool
    notes: str = ""


class Collector:
    """What the AMOS app told us, by namespace, with the wall-clock time it arrived."""

    def __init__(self) -> None:
        self.incidents: list[tuple[float, Incident]] = []
        self.reports: list[tuple[float, IncidentReport]] = []
        self.changed = threading.Condition()

    def incident(self, incident: Incident) -> None:
        with self.changed:
            self.incidents.append((time.time(), incident))
            self.changed.notify_all()

    def report(self, report: IncidentReport) -> None:
        with self.changed:
            self.reports.append((time.time(), report))
            self.changed.notify_all()

    def for_namespace(self, namespace: str) -> tuple[list[tuple[float, Incident]], list[tuple[float, IncidentReport]]]:
        with self.changed:
            return ([(t, i) for t, i in self.incidents if i.workload.namespace == namespace],
                    [(t, r) for t, r in self.reports if r.incident.workload.namespace == namespace])


def _fingerprint_outside(api: client.ApiClient, namespace: str, faulty: tuple[str, ...]) -> dict[str, str]:
    """Spec fingerprints of everything in the namespace that is not a faulty workload (or owned by one)."""
    apps, core, batch = client.AppsV1Api(api), client.CoreV1Api(api), client.BatchV1Api(api)
    prints: dict[str, str] = {}
    for d in apps.list_namespaced_deployment(namespace).items:
        if d.metadata.name not in faulty:
            prints[f"Deployment/{d.metadata.name}"] = f"gen={d.metadata.generation} replicas={d.spec.replicas}"
    for j in batch.list_namespaced_job(namespace).items:
        if j.metadata.name not in faulty:
            prints[f"Job/{j.metadata.name}"] = f"gen={j.metadata.generation}"
    for kind, items in (("ConfigMap", core.list_namespaced_config_map(namespace).items),
                        ("Secret", core.list_namespaced_secret(namespace).items)):
        for item in items:
            prints[f"{kind}/{item.metadata.name}"] = item.metadata.resource_version
    for pod in core.list_namespaced_pod(namespace, label_selector="app=bystander").items:
        prints[f"Pod/{pod.metadata.name}"] = pod.metadata.uid
    return prints


def _deploy(api: client.ApiClient, namespace: str, scenario: Scenario) -> None:
    apps = client.AppsV1Api(api)
    for manifest in scenario.healthy:
        apps.create_namespaced_deployment(namespace, manifest)
    for manifest in scenario.healthy:
        name = manifest["metadata"]["name"]
        wait_for(lambda: rollout_complete(api, namespace, name), timeout=60, what=f"{name} Ready")


def run_scenario(api: client.ApiClient, scenario: Scenario, collector: Collector) -> ScenarioResult:
    suffix = uuid.uuid4().hex[:5]
    namespace = EXCLUDED_NAMESPACE if scenario.excluded_namespace else f"scn-{scenario.name}-{suffix}"
    create_namespace(api, namespace, {"amos.io/scenario": "true"})
    _deploy(api, namespace, scenario)
    before = _fingerprint_outside(api, namespace, scenario.faulty)
    injected = time.time()
    scenario.inject(api, namespace)

    expected_reports = 0 if not scenario.expected_kinds else len(scenario.faulty)
    deadline = injected + (QUIET_SECONDS if expected_reports == 0 else REPORT_TIMEOUT_SECONDS)
    with collector.changed:
        while time.time() < deadline:
            _, reports = collector.for_namespace(namespace)
            if expected_reports and len({r.incident.workload.name for _, r in reports}) >= expected_reports:
                break
            collector.changed.wait(1.0)
    time.sleep(1.0)  # let a last Event or write land before comparing
    incidents, reports = collector.for_namespace(namespace)
    opened = [(t, i) for t, i in incidents if i.state is IncidentState.OPEN]
    after = _fingerprint_outside(api, namespace, scenario.faulty)
    outside = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    return _judge(scenario, namespace, injected, opened, reports, outside)


def _judge(scenario: Scenario, namespace: str, injected: float, opened: list[tuple[float, Incident]],
           reports: list[tuple[float, IncidentReport]], outside: list[str]) -> ScenarioResult:
    finals = {r.incident.workload.name: (t, r) for t, r in reports}  # the last report per workload counts
    kinds = sorted({i.kind.value for _, i in opened})
    detected = min((t for t, _ in opened), default=None)
    outcomes = {r.outcome for _, r in finals.values()}
    fixed = bool(finals) and outcomes == {Outcome.FIXED}
    categories = {r.category for _, r in finals.values()}
    right = None if scenario.expected_category is None else categories == {scenario.expected_category}
    mttr = max((t for t, _ in finals.values()), default=None)
    attempts = max((r.attempt for _, r in finals.values()), default=0)
    notes = "; ".join(f"{name}: {r.outcome.value} - {(r.escalation_reason or r.root_cause)[:100]}"
                      for name, (_, r) in finals.items())
    if not scenario.expected_kinds:
        passed = not opened and not reports and not outside
    else:
        passed = (
            set(kinds) >= {k.value for k in scenario.expected_kinds}
            and outcomes == {scenario.expected_outcome}
            and right is not False
            and not outside
            and attempts <= scenario.max_attempts_expected
        )
    return ScenarioResult(
        name=scenario.name, namespace=namespace,
        detected_seconds=round(detected - injected, 2) if detected else None, kinds_seen=kinds,
        right_diagnosis=right, outcome=",".join(sorted(o.value for o in outcomes)) or None,
        fixed_and_verified=fixed, mttr_seconds=round(mttr - injected, 1) if mttr and fixed else None,
        attempts=attempts, rollbacks=sum(1 for _, r in finals.values() if r.rolled_back),
        escalations=sum(1 for _, r in finals.values() if r.outcome is Outcome.ESCALATED),
        outside_changes=outside, passed=passed, notes=notes,
    )


def suite_settings(kubeconfig: Path, base: Settings | None = None) -> Settings:
    """Settings for the suite: the lab's kubeconfig, short grace periods, no mail, no leader election."""
    overrides: dict[str, Any] = {
        "kubeconfig": kubeconfig, "leader_election": False, "http_port": 0,
        "pending_grace_seconds": 5.0, "unavailable_grace_seconds": 90.0, "verify_timeout_seconds": 45.0,
        "workload_cooldown_seconds": 0.0, "actions_per_hour": 500,
        "excluded_namespaces": ["kube-system", "kube-public", "kube-node-lease", EXCLUDED_NAMESPACE],
    }
    return (base or load_settings()).model_copy(update=overrides)


@contextmanager
def amos_on(api: client.ApiClient, settings: Settings, collector: Collector) -> Iterator[AmosApp]:
    app = AmosApp(settings, api, on_report=collector.report, on_incident=collector.incident, serve_http=False)
    app.start()
    try:
        if not app.watcher.wait_synced(30):
            raise RuntimeError("AMOS watches did not sync within 30 s")
        yield app
    finally:
        app.stop(grace_seconds=30)


def print_table(results: list[ScenarioResult]) -> None:
    header = f"{'scenario':30} {'detected':>8} {'diagnosis':>9} {'outcome':>12} {'MTTR':>6} {'att':>3} " \
             f"{'rb':>2} {'esc':>3} {'outside':>7} {'pass':>4}"
    print(header)
    print("-" * len(header))
    for r in results:
        detected = f"{r.detected_seconds:.1f}s" if r.detected_seconds is not None else "-"
        right = {True: "right", False: "WRONG", None: "-"}[r.right_diagnosis]
        mttr = f"{r.mttr_seconds:.0f}s" if r.mttr_seconds is not None else "-"
        print(f"{r.name:30} {detected:>8} {right:>9} {(r.outcome or 'none'):>12} {mttr:>6} {r.attempts:>3} "
              f"{r.rollbacks:>2} {r.escalations:>3} {len(r.outside_changes):>7} {'yes' if r.passed else 'NO':>4}")
    print(f"\n{sum(r.passed for r in results)}/{len(results)} scenarios passed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these scenarios")
    parser.add_argument("--json", type=Path, default=Path("results/scenarios.json"))
    parser.add_argument("--kubeconfig", type=Path, help="use this cluster instead of starting a lab")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    with tempfile.TemporaryDirectory(prefix="amos-scenarios-") as workdir, _cluster(args.kubeconfig, workdir) as kc:
        api = connect(kc)
        settings = suite_settings(kc)
        collector = Collector()
        results = []
        with amos_on(api, settings, collector):
            for scenario in chosen:
                print(f"--- {scenario.name}: {scenario.description}", flush=True)
                results.append(run_scenario(api, scenario, collector))
                print(f"    {results[-1].model_dump_json(include={'outcome', 'detected_seconds', 'passed', 'notes'})}",
                      flush=True)
    print_table(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"run_at": datetime.now().isoformat(timespec="seconds"),
                                     "results": [r.model_dump() for r in results]}, indent=2))
    print(f"results written to {args.json}")
    return 0 if all(r.passed for r in results) else 1


@contextmanager
def _cluster(kubeconfig: Path | None, workdir: str) -> Iterator[Path]:
    if kubeconfig is not None:
        yield kubeconfig
        return
    build.build()
    with LabCluster(Path(workdir)) as lab:
        yield lab.kubeconfig


if __name__ == "__main__":
    sys.exit(main())
