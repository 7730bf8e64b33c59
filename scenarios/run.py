"""Run the scenario suite on the lab and print (and save) what AMOS did for each.

    python -m scenarios [--only NAME ...] [--repeat K] [--json results/scenarios.json]
                        [--markdown results/scenarios.md] [--kubeconfig K]

Each run of a scenario gets its own namespace: healthy workloads first (awaited Ready),
then one injected fault, then AMOS (offline diagnoser unless a model is configured)
runs until it reports. Objects outside the faulty workloads are fingerprinted before
and after: AMOS must not have changed any of them; the faulty workload's pod template
is compared with the known-good one (or the faulty one, when AMOS must only escalate).
With `--repeat K` every scenario runs K times: pass@1 is the share of runs that passed,
pass^K whether all K did (the figure for autonomous use).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from core import k8s
from core.config import Settings, load_settings
from core.models import Incident, IncidentState
from core.report import IncidentReport, Outcome
from lab import build
from lab.cluster import LabCluster
from lab.workloads import create, create_namespace, wait_for, workload_ready
from scenarios.catalog import SCENARIOS, After, Scenario

if TYPE_CHECKING:
    from service.app import AmosApp

EXCLUDED_NAMESPACE = "scn-excluded"  # listed in the suite's excluded_namespaces
QUIET_SECONDS = 20.0  # how long "nothing happens" is watched for, where nothing must happen
SETTLE_SECONDS = 5.0  # after the last report: a follow-up incident (a second rollout) would open by then
HEALTHY_TIMEOUT_SECONDS = 150.0  # a CronJob needs a scheduled run that succeeds


class ScenarioResult(BaseModel):
    name: str
    fault: str
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
    state_problems: list[str] = []  # how the cluster after AMOS differs from what the scenario expects
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
            return (
                [(t, i) for t, i in self.incidents if i.workload.namespace == namespace],
                [(t, r) for t, r in self.reports if r.incident.workload.namespace == namespace],
            )


def _metadata(obj: Any) -> client.V1ObjectMeta:
    """A listed object's metadata: the API server always sets it, with name, uid and resourceVersion."""
    metadata = obj.metadata
    assert isinstance(metadata, client.V1ObjectMeta)
    return metadata


def _required(value: str | None) -> str:
    """A field the API server always sets on stored objects."""
    assert value is not None
    return value


def _fingerprint_outside(api: client.ApiClient, namespace: str, faulty: tuple[str, ...]) -> dict[str, str]:
    """Spec fingerprints of everything in the namespace that is not a faulty workload (or owned by one)."""
    apps, core, batch = client.AppsV1Api(api), client.CoreV1Api(api), client.BatchV1Api(api)
    prints: dict[str, str] = {}
    for d in apps.list_namespaced_deployment(namespace).items:
        meta = _metadata(d)
        if meta.name not in faulty:
            prints[f"Deployment/{meta.name}"] = f"gen={meta.generation} replicas={d.spec.replicas}"
    for j in batch.list_namespaced_job(namespace).items:
        meta = _metadata(j)
        owners = {ref.name for ref in meta.owner_references or []}
        if meta.name not in faulty and not owners & set(faulty):  # a faulty CronJob's runs come and go
            prints[f"Job/{meta.name}"] = f"gen={meta.generation}"
    workloads: tuple[tuple[str, list[Any]], ...] = (
        ("StatefulSet", apps.list_namespaced_stateful_set(namespace).items),
        ("DaemonSet", apps.list_namespaced_daemon_set(namespace).items),
        ("CronJob", batch.list_namespaced_cron_job(namespace).items),
    )
    for kind, listed in workloads:
        for item in listed:
            meta = _metadata(item)
            if meta.name not in faulty:
                prints[f"{kind}/{meta.name}"] = f"gen={meta.generation}"
    stored: tuple[tuple[str, list[Any]], ...] = (
        ("ConfigMap", core.list_namespaced_config_map(namespace).items),
        ("Secret", core.list_namespaced_secret(namespace).items),
    )
    for kind, items in stored:
        for item in items:
            meta = _metadata(item)
            prints[f"{kind}/{meta.name}"] = _required(meta.resource_version)
    for pod in core.list_namespaced_pod(namespace, label_selector="app=bystander").items:
        meta = _metadata(pod)
        prints[f"Pod/{meta.name}"] = _required(meta.uid)
    return prints


def _deploy(api: client.ApiClient, namespace: str, scenario: Scenario) -> None:
    for manifest in scenario.healthy:
        create(api, namespace, manifest)
    for manifest in scenario.healthy:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        if kind in k8s.SUBJECT_KINDS:
            wait_for(
                functools.partial(workload_ready, api, namespace, kind, name),
                timeout=HEALTHY_TIMEOUT_SECONDS,
                interval=1.0,
                what=f"{kind}/{name} Ready",
            )


_READERS: dict[str, Callable[[client.ApiClient], Callable[[str, str], object]]] = {
    "Deployment": lambda api: client.AppsV1Api(api).read_namespaced_deployment,
    "StatefulSet": lambda api: client.AppsV1Api(api).read_namespaced_stateful_set,
    "DaemonSet": lambda api: client.AppsV1Api(api).read_namespaced_daemon_set,
    "CronJob": lambda api: client.BatchV1Api(api).read_namespaced_cron_job,
    "Job": lambda api: client.BatchV1Api(api).read_namespaced_job,
    "Pod": lambda api: client.CoreV1Api(api).read_namespaced_pod,
}


def workload_shape(api: client.ApiClient, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
    """What AMOS must not lose: the pod template (a CronJob's job template) and the replica count."""
    try:
        obj = api.sanitize_for_serialization(_READERS[kind](api)(name, namespace))  # type: ignore[no-untyped-call]
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    spec = obj.get("spec") or {}
    if kind == "Pod":
        return {"template": {key: spec.get(key) for key in ("containers", "initContainers")}}
    if kind == "CronJob":
        return {"template": ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")}
    return {"template": spec.get("template"), "replicas": spec.get("replicas")}


def _containers(shape: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = (shape.get("template") or {}).get("spec") or shape.get("template") or {}
    return {c["name"]: c for field in ("initContainers", "containers") for c in spec.get(field) or []}


def _memory_limit(container: dict[str, Any]) -> float:
    value = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return float(k8s.parse_quantity(str(value))) if value else 0.0


def state_problems(
    after: After, good: dict[str, Any] | None, faulty: dict[str, Any] | None, now: dict[str, Any] | None
) -> list[str]:
    """How the workload after AMOS differs from what `after` expects (empty: as expected)."""
    if after is After.ANY:
        return []
    if now is None:
        return ["the workload is gone"]
    if after is After.RESTORED:
        if good is None:
            return ["no known-good template was captured"]
        return [] if now == good else [f"template differs from the known-good one: {_first_difference(good, now)}"]
    if after is After.UNCHANGED:
        return (
            []
            if now == faulty
            else [f"template changed although AMOS had to escalate: {_first_difference(faulty, now)}"]
        )
    problems: list[str] = []  # RAISED: the same containers, probes and replicas; a higher memory limit
    before, current = _containers(faulty or {}), _containers(now)
    if set(before) != set(current):
        problems.append(f"containers {sorted(before)} became {sorted(current)}")
    for name, container in before.items():
        mine = current.get(name, {})
        for key in ("image", "command", "args", "env", "envFrom", "livenessProbe", "readinessProbe", "startupProbe"):
            if container.get(key) != mine.get(key):
                problems.append(f"container {name}: {key} changed")
    if (faulty or {}).get("replicas") != now.get("replicas"):
        problems.append(f"replicas {(faulty or {}).get('replicas')} became {now.get('replicas')}")
    if not any(_memory_limit(c) > _memory_limit(before.get(n, {})) for n, c in current.items()):
        problems.append("no memory limit was raised")
    return problems


def _first_difference(expected: Any, actual: Any, path: str = "") -> str:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(set(expected) | set(actual)):
            if expected.get(key) != actual.get(key):
                return _first_difference(expected.get(key), actual.get(key), f"{path}.{key}")
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        for index, (a, b) in enumerate(zip(expected, actual, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{path}[{index}]")
    return f"{path or '.'}: {json.dumps(expected, default=str)[:120]} -> {json.dumps(actual, default=str)[:120]}"


def run_scenario(api: client.ApiClient, scenario: Scenario, collector: Collector) -> ScenarioResult:
    suffix = uuid.uuid4().hex[:5]
    namespace = EXCLUDED_NAMESPACE if scenario.excluded_namespace else f"scn-{scenario.name}-{suffix}"[:63]
    if scenario.excluded_namespace:
        _delete_namespace(api, namespace)  # its name is fixed (the settings exclude it): a repeat starts afresh
    create_namespace(api, namespace, {"amos.io/scenario": "true"})
    _deploy(api, namespace, scenario)
    before = _fingerprint_outside(api, namespace, scenario.faulty)
    good = {name: workload_shape(api, namespace, scenario.faulty_kind, name) for name in scenario.faulty}
    injected = time.time()
    scenario.inject(api, namespace)
    faulty = {name: workload_shape(api, namespace, scenario.faulty_kind, name) for name in scenario.faulty}

    deadline = injected + (QUIET_SECONDS if not scenario.expected_kinds else scenario.timeout_seconds)
    settled_at: float | None = None
    with collector.changed:
        while time.time() < deadline:
            if scenario.expected_kinds and _all_reported(collector, namespace, scenario):
                settled_at = settled_at or time.time()
                if time.time() - settled_at >= SETTLE_SECONDS:
                    break
            else:
                settled_at = None
            collector.changed.wait(1.0)
    time.sleep(1.0)  # let a last Event or write land before comparing
    incidents, reports = collector.for_namespace(namespace)
    opened = [(t, i) for t, i in incidents if i.state is IncidentState.OPEN]
    after = _fingerprint_outside(api, namespace, scenario.faulty)
    outside = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    problems = [
        f"{name}: {problem}"
        for name in scenario.faulty
        for problem in state_problems(
            scenario.after, good[name], faulty[name], workload_shape(api, namespace, scenario.faulty_kind, name)
        )
    ]
    return _judge(scenario, namespace, injected, opened, reports, outside, problems)


def _delete_namespace(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    if not gone():
        core.delete_namespace(namespace, propagation_policy="Background")
        wait_for(gone, timeout=120, interval=1.0, what=f"namespace {namespace} to be deleted")


def _all_reported(collector: Collector, namespace: str, scenario: Scenario) -> bool:
    """Every faulty workload has a report, and every incident opened in the namespace has one too."""
    incidents, reports = collector.for_namespace(namespace)
    reported = {r.incident.id for _, r in reports}
    workloads = {r.incident.workload.name for _, r in reports}
    opened = {i.id for _, i in incidents if i.state is IncidentState.OPEN}
    return workloads >= set(scenario.faulty) and opened <= reported


def _judge(
    scenario: Scenario,
    namespace: str,
    injected: float,
    opened: list[tuple[float, Incident]],
    reports: list[tuple[float, IncidentReport]],
    outside: list[str],
    problems: list[str],
) -> ScenarioResult:
    finals = {r.incident.workload.name: (t, r) for t, r in reports}  # the last report per workload counts
    kinds = sorted({i.kind.value for _, i in opened})
    detected = min((t for t, _ in opened), default=None)
    outcomes = {r.outcome for _, r in finals.values()}
    fixed = bool(finals) and outcomes == {Outcome.FIXED}
    categories = {r.category for _, r in finals.values()}
    right = None if scenario.expected_category is None else categories == {scenario.expected_category.value}
    mttr = max((t for t, _ in finals.values()), default=None)
    attempts = max((r.attempt for _, r in finals.values()), default=0)
    said = " ".join(
        " ".join([r.root_cause, r.escalation_reason or "", *r.human_steps, *r.evidence]) for _, r in finals.values()
    ).lower()
    missing_text = [text for text in scenario.expected_text if text.lower() not in said]
    problems = problems + [f"the report does not say {text!r}" for text in missing_text]
    notes = "; ".join(
        f"{name}: {r.outcome.value} - {(r.escalation_reason or r.root_cause)[:160]}" for name, (_, r) in finals.items()
    )
    if problems:
        notes = "; ".join(problems) + ("; " + notes if notes else "")
    if not scenario.expected_kinds:
        passed = not opened and not reports and not outside
    else:
        passed = (
            set(kinds) >= {k.value for k in scenario.expected_kinds}
            and outcomes == {scenario.expected_outcome}
            and right is not False
            and not outside
            and not problems
            and attempts <= scenario.max_attempts_expected
        )
    return ScenarioResult(
        name=scenario.name,
        fault=scenario.fault,
        namespace=namespace,
        detected_seconds=round(detected - injected, 2) if detected else None,
        kinds_seen=kinds,
        right_diagnosis=right,
        outcome=",".join(sorted(o.value for o in outcomes)) or None,
        fixed_and_verified=fixed,
        mttr_seconds=round(mttr - injected, 1) if mttr and fixed else None,
        attempts=attempts,
        rollbacks=sum(1 for _, r in finals.values() if r.rolled_back),
        escalations=sum(1 for _, r in finals.values() if r.outcome is Outcome.ESCALATED),
        outside_changes=outside,
        state_problems=problems,
        passed=passed,
        notes=notes,
    )


def suite_settings(kubeconfig: Path, base: Settings | None = None) -> Settings:
    """Settings for the suite: the lab's kubeconfig, short grace periods, no mail, no leader election."""
    overrides: dict[str, Any] = {
        "kubeconfig": kubeconfig,
        "leader_election": False,
        "http_port": 0,
        "pending_grace_seconds": 5.0,
        "unavailable_grace_seconds": 90.0,
        "verify_timeout_seconds": 90.0,
        "workload_cooldown_seconds": 0.0,
        "actions_per_hour": 500,
        "excluded_namespaces": ["kube-system", "kube-public", "kube-node-lease", EXCLUDED_NAMESPACE],
    }
    return (base or load_settings()).model_copy(update=overrides)


@contextmanager
def amos_on(api: client.ApiClient, settings: Settings, collector: Collector) -> Iterator[AmosApp]:
    from service.app import AmosApp  # the whole service: imported only when a suite really runs

    app = AmosApp(settings, api, on_report=collector.report, on_incident=collector.incident, serve_http=False)
    app.start()
    try:
        if not app.watcher.wait_synced(30):
            raise RuntimeError("AMOS watches did not sync within 30 s")
        yield app
    finally:
        app.stop(grace_seconds=30)


class ScenarioSummary(BaseModel):
    """One scenario over K runs: the table row."""

    name: str
    fault: str
    runs: int
    passed: int
    pass_at_1: float  # the share of runs that passed
    pass_hat_k: bool  # every run passed
    outcome: str | None  # the outcome of the runs (several when they disagree)
    mttr_seconds: float | None  # median time from injection to a verified fix, over the fixed runs
    attempts: int  # the most attempts any run needed


def summarize(results: list[ScenarioResult]) -> list[ScenarioSummary]:
    by_name: dict[str, list[ScenarioResult]] = {}
    for result in results:
        by_name.setdefault(result.name, []).append(result)
    summaries = []
    for name, runs in by_name.items():
        times = [r.mttr_seconds for r in runs if r.mttr_seconds is not None]
        outcomes = sorted({r.outcome or "none" for r in runs})
        summaries.append(
            ScenarioSummary(
                name=name,
                fault=runs[0].fault,
                runs=len(runs),
                passed=sum(r.passed for r in runs),
                pass_at_1=round(sum(r.passed for r in runs) / len(runs), 3),
                pass_hat_k=all(r.passed for r in runs),
                outcome="/".join(outcomes),
                mttr_seconds=round(statistics.median(times), 1) if times else None,
                attempts=max(r.attempts for r in runs),
            )
        )
    return summaries


def _mttr(value: float | None) -> str:
    return f"{value:.0f}s" if value is not None else "-"


def print_runs(results: list[ScenarioResult]) -> None:
    header = (
        f"{'scenario':30} {'detected':>8} {'diagnosis':>9} {'outcome':>12} {'MTTR':>6} {'att':>3} "
        f"{'rb':>2} {'esc':>3} {'outside':>7} {'pass':>4}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        detected = f"{r.detected_seconds:.1f}s" if r.detected_seconds is not None else "-"
        right = {True: "right", False: "WRONG", None: "-"}[r.right_diagnosis]
        print(
            f"{r.name:30} {detected:>8} {right:>9} {(r.outcome or 'none'):>12} {_mttr(r.mttr_seconds):>6} "
            f"{r.attempts:>3} {r.rollbacks:>2} {r.escalations:>3} {len(r.outside_changes):>7} "
            f"{'yes' if r.passed else 'NO':>4}"
        )


def print_table(summaries: list[ScenarioSummary], repeat: int) -> None:
    header = (
        f"{'scenario':30} {'fault':28} {'outcome':>12} {'MTTR':>6} {'att':>3} {'pass@1':>6} {'pass^' + str(repeat):>6}"
    )
    print(header)
    print("-" * len(header))
    for s in summaries:
        print(
            f"{s.name:30} {s.fault[:28]:28} {(s.outcome or 'none')[:12]:>12} {_mttr(s.mttr_seconds):>6} "
            f"{s.attempts:>3} {s.pass_at_1:>6.2f} {'yes' if s.pass_hat_k else 'NO':>6}"
        )
    runs = sum(s.runs for s in summaries)
    print(
        f"\n{sum(s.passed for s in summaries)}/{runs} runs passed; pass^{repeat}: "
        f"{sum(s.pass_hat_k for s in summaries)}/{len(summaries)} scenarios"
    )


def markdown_table(summaries: list[ScenarioSummary], repeat: int, model: str) -> str:
    """The table for the README: one row per scenario."""
    lines = [
        f"| scenario | fault | outcome | MTTR | attempts | pass@1 | pass^{repeat} |",
        "|---|---|---|---:|---:|---:|:---:|",
    ]
    for s in summaries:
        lines.append(
            f"| {s.name} | {s.fault} | {s.outcome or 'none'} | {_mttr(s.mttr_seconds)} | {s.attempts} | "
            f"{s.pass_at_1:.2f} | {'yes' if s.pass_hat_k else 'no'} |"
        )
    passed = sum(s.pass_hat_k for s in summaries)
    lines.append("")
    lines.append(
        f"{passed}/{len(summaries)} scenarios passed all {repeat} run(s) with model `{model}`; MTTR is the "
        "median time from the injected fault to AMOS's verified fix."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scenarios", description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these scenarios")
    parser.add_argument("--repeat", type=int, default=1, metavar="K", help="run each scenario K times (pass@1, pass^K)")
    parser.add_argument("--json", type=Path, default=Path("results/scenarios.json"))
    parser.add_argument("--markdown", type=Path, default=Path("results/scenarios.md"))
    parser.add_argument("--kubeconfig", type=Path, help="use this cluster instead of starting a lab")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)
    if args.list:
        for scenario in SCENARIOS:
            print(f"{scenario.name:30} {scenario.fault:28} {scenario.description}")
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    unknown = sorted(set(args.only or []) - {s.name for s in SCENARIOS})
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)} (see --list)")
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    with tempfile.TemporaryDirectory(prefix="amos-scenarios-") as workdir, _cluster(args.kubeconfig, workdir) as kc:
        from service.kube import connect

        api = connect(kc)
        settings = suite_settings(kc)
        collector = Collector()
        results = []
        with amos_on(api, settings, collector) as app:
            model = _model_label(app)
            for scenario in chosen:
                for run in range(1, args.repeat + 1):
                    print(f"--- {scenario.name} ({run}/{args.repeat}): {scenario.description}", flush=True)
                    results.append(run_scenario(api, scenario, collector))
                    shown = {"outcome", "detected_seconds", "mttr_seconds", "passed", "notes"}
                    print(f"    {results[-1].model_dump_json(include=shown)}", flush=True)
    print_runs(results)
    print()
    summaries = summarize(results)
    print_table(summaries, args.repeat)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "run_at": datetime.now().isoformat(timespec="seconds"),
                "model": model,
                "repeat": args.repeat,
                "scenarios": [s.model_dump() for s in summaries],
                "results": [r.model_dump() for r in results],
            },
            indent=2,
        )
    )
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(markdown_table(summaries, args.repeat, model))
    print(f"results written to {args.json} and {args.markdown}")
    return 0 if all(r.passed for r in results) else 1


def _model_label(app: AmosApp) -> str:
    from agents.models import build_model, model_label

    try:
        return model_label(build_model(app.settings))
    except Exception:  # noqa: BLE001 - only a label for the table
        return "unknown"


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
