"""Load: many Deployments broken at once, through the whole AMOS loop. Is every incident concluded?

Why: issue 18 asks whether AMOS concludes every incident (fixed, escalated, proposed, or skipped
with a report or an Event: none silent) when something breaks widely, and which guard rail held
the rest; the scale benchmark only measures detection.

What it does, on a lab (or `--kubeconfig`), once per configuration (`--storm-min`):

1. starts the whole service in-process (`AmosApp`, offline diagnoser, HTTP on a free port), with
   default settings except the storm threshold of the run (and no leader election: one replica);
2. creates `--namespaces` namespaces, each with `--bystanders` healthy Deployments (so a namespace is
   not an outage by itself) and the healthy first revision of each restorable Deployment; waits until
   every one is Ready, then `--settle-seconds` so known-good marks are recorded as in a running cluster;
3. breaks `--deployments` Deployments within seconds, cycling through restorable faults (a new revision
   with a bad image, bad args, a bad env value or a lowered memory limit: an earlier revision is good)
   and non-restorable ones (created broken: a missing ConfigMap, an unschedulable CPU request, a crash);
4. follows every incident AMOS opens on them until it is concluded: a report (`on_report`), an AMOS
   Event naming it (Skipped), a storm/outage report listing its workload, or resolved after its workload
   was reported; and samples /healthz and /metrics latency every second and the in-flight incidents.

Run from the repository root (starts a lab unless --kubeconfig points at one):
    python -m benchmarks.load [--deployments 100] [--namespaces 10] [--storm-min 10 1000]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from kubernetes import client

from benchmarks.figures import Usage, cpu_share, describe, load_average, percentile, usage, verdict
from benchmarks.kube import manifest, raw_json
from core.config import ModelProvider, Settings, load_settings
from core.models import Incident, IncidentState
from core.report import IncidentReport, Outcome
from lab import workloads
from orchestrator.breaker import BREAKER_NAME

TARGET_SECONDS = 300.0  # every incident concluded within 5 minutes
BREAK_WITHIN_SECONDS = 10.0
EVENT_SCAN_SECONDS = 3.0
SETTLE_AFTER_LAST_SECONDS = 15.0  # nothing new opened for this long: the run is over
HEALTHY_IMAGE = "shop/api:1.0"
BENCHMARK_LABEL = "amos.io/benchmark"
BREAK_WRITERS = 16  # concurrent writes that break the Deployments: one at a time takes longer than 10 s under load
CONCLUDING_EVENTS = frozenset({"Skipped"})
INCIDENT_IN_MESSAGE = re.compile(r"\bincident ([0-9a-f]{12})\b")
GUARD_PHRASES = {  # words of guardrails.decide's reasons, to say which rail held an incident
    "storm": "workloads across the cluster started failing",
    "outage": "looks like an outage",
    "breaker": "the circuit breaker is open",
    "budget": "action budget",
    "blocked": "is blocked until",
}


class LoadFault(StrEnum):
    BAD_IMAGE = "bad-image"
    MISSING_CONFIGMAP = "missing-configmap"
    BAD_ARGS = "bad-args"
    UNSCHEDULABLE = "unschedulable"
    BAD_ENV = "bad-env"
    CRASH_FIRST = "crash-first"
    LOW_MEMORY = "low-memory"

    @property
    def restorable(self) -> bool:
        """An earlier revision of the Deployment was healthy, so a rollback restores it."""
        return self in RESTORABLE


RESTORABLE = frozenset({LoadFault.BAD_IMAGE, LoadFault.BAD_ARGS, LoadFault.BAD_ENV, LoadFault.LOW_MEMORY})
FAULT_CYCLE = list(LoadFault)  # restorable and not alternate, so a small run has both


@dataclass(frozen=True)
class Target:
    namespace: str
    name: str
    fault: LoadFault

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def fault_plan(deployments: int, namespaces: list[str]) -> list[Target]:
    """`deployments` broken Deployments spread round-robin over `namespaces`, faults cycling."""
    if deployments < 1 or not namespaces:
        raise ValueError("need at least one Deployment and one namespace")
    return [
        Target(namespaces[i % len(namespaces)], f"{fault.value}-{i:03d}", fault)
        for i in range(deployments)
        for fault in [FAULT_CYCLE[i % len(FAULT_CYCLE)]]
    ]


# ---- manifests -------------------------------------------------------------------------------------
def healthy_manifest(name: str, fault: LoadFault | None = None) -> dict[str, Any]:
    """The first revision: healthy for a bystander (None) and a restorable fault, already broken otherwise."""
    match fault:
        case None | LoadFault.BAD_IMAGE:
            return workloads.deployment(name, HEALTHY_IMAGE)
        case LoadFault.BAD_ARGS:
            return workloads.deployment(name, HEALTHY_IMAGE, args=["--port=8080"])
        case LoadFault.BAD_ENV:
            return workloads.deployment(name, HEALTHY_IMAGE, env={"DATABASE_URL": "postgres://db.shop.svc:5432/app"})
        case LoadFault.LOW_MEMORY:
            return workloads.deployment(name, HEALTHY_IMAGE, env={"LAB_MEMORY_MI": "100"}, memory_limit="256Mi")
        case LoadFault.MISSING_CONFIGMAP:
            return workloads.deployment(name, HEALTHY_IMAGE, env_from_configmap=f"{name}-config")
        case LoadFault.UNSCHEDULABLE:
            return workloads.deployment(name, HEALTHY_IMAGE, cpu_request="64")  # a lab node has 32 CPUs
        case LoadFault.CRASH_FIRST:
            return workloads.deployment(name, "shop/api:2.0-crash")


def breaking_patch(fault: LoadFault) -> dict[str, Any]:
    """The strategic-merge patch that makes a restorable fault's second revision."""
    changes: dict[LoadFault, dict[str, Any]] = {
        LoadFault.BAD_IMAGE: {"image": "shop/api:v9.9.9-missing"},
        LoadFault.BAD_ARGS: {"args": ["--bad-flag"]},
        LoadFault.BAD_ENV: {"env": [{"name": "DATABASE_URL", "value": "postgres://db.shop.invalid:5432/app"}]},
        LoadFault.LOW_MEMORY: {"resources": {"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}}},
    }
    if fault not in changes:
        raise ValueError(f"{fault} is created broken, not patched")
    return {"spec": {"template": {"spec": {"containers": [{"name": "app", **changes[fault]}]}}}}


# ---- bookkeeping: is every incident concluded? -------------------------------------------------------
@dataclass
class IncidentRecord:
    id: str
    workload: str  # namespace/name
    kind: str
    opened_at: float
    resolved_at: float | None = None
    concluded_by: str | None = None  # "report: fixed", "event: Skipped (storm)", ...
    concluded_at: float | None = None


def guard_of(text: str) -> str:
    """Which guard rail a reason names ("" for none)."""
    lowered = text.lower()
    return next((rule for rule, phrase in GUARD_PHRASES.items() if phrase in lowered), "")


class Conclusions:
    """What AMOS said about each incident on the broken workloads; thread-safe (watch and sampler threads)."""

    def __init__(self, broken_at: dict[str, float]) -> None:
        self.broken_at = broken_at  # workload key -> when it was broken (epoch seconds)
        self.incidents: dict[str, IncidentRecord] = {}
        self.reports: list[tuple[float, IncidentReport]] = []
        self.events: Counter[str] = Counter()  # AMOS Event reason (and guard rail) -> count
        self.guard_holds: Counter[str] = Counter()
        self._reported_workloads: set[str] = set()
        self._lock = threading.Lock()

    def watched(self, workload: str) -> bool:
        """A broken workload, once it is broken (a blip of its healthy revision before the break is not counted)."""
        return self.broken_at.get(workload, float("inf")) <= time.time()

    def incident(self, incident: Incident, at: float) -> None:
        key = f"{incident.workload.namespace}/{incident.workload.name}"
        if not self.watched(key):
            return
        with self._lock:
            record = self.incidents.get(incident.id)
            if incident.state is IncidentState.OPEN:
                if record is None or record.resolved_at is not None:  # new, or the fault came back
                    self.incidents[incident.id] = IncidentRecord(incident.id, key, incident.kind.value, at)
            elif record is not None and record.resolved_at is None:
                record.resolved_at = at
                if record.concluded_by is None and key in self._reported_workloads:
                    self._conclude(record, "resolved after its workload was reported", at)

    def report(self, report: IncidentReport, at: float) -> None:
        key = f"{report.incident.workload.namespace}/{report.incident.workload.name}"
        if not self.watched(key):
            return
        rule = guard_of(report.escalation_reason or "")
        with self._lock:
            self.reports.append((at, report))
            self._reported_workloads.add(key)
            if rule:
                self.guard_holds[f"report ({report.outcome.value}) held by {rule}"] += 1
            record = self.incidents.get(report.incident.id)
            if record is not None:
                how = f"report: {report.outcome.value}" + (f" ({rule})" if rule else "")
                self._conclude(record, how, at, final=True)
            listed = {
                f"{w.workload.namespace}/{w.workload.name}" for w in (report.outage.failing if report.outage else [])
            }
            for other in self.incidents.values():
                if other.workload in listed and other.opened_at <= at:
                    self._conclude(other, f"listed in a grouped {rule or 'outage'} report", at)
                if other.workload == key and other.resolved_at is not None:
                    self._conclude(other, "resolved after its workload was reported", at)

    def event(self, reason: str, message: str, at: float) -> None:
        """An AMOS Event on a broken workload; a Skipped one naming an incident concludes it."""
        rule = guard_of(message)
        with self._lock:
            self.events[reason + (f" ({rule})" if rule else "")] += 1
            found = INCIDENT_IN_MESSAGE.search(message)
            if reason in CONCLUDING_EVENTS and found and (record := self.incidents.get(found.group(1))):
                if rule and record.concluded_by is None:
                    self.guard_holds[f"event ({reason}) held by {rule}"] += 1
                self._conclude(record, f"event: {reason}" + (f" ({rule})" if rule else ""), at)

    @staticmethod
    def _conclude(record: IncidentRecord, how: str, at: float, final: bool = False) -> None:
        """The first conclusion sets the time; a report (`final`) names how, even after an Event did."""
        if record.concluded_by is None:
            record.concluded_by, record.concluded_at = how, at
        elif final and not record.concluded_by.startswith("report"):
            record.concluded_by = how

    # ---- views ----------------------------------------------------------------------------------
    def snapshot(self) -> list[IncidentRecord]:
        with self._lock:
            return [IncidentRecord(**vars(r)) for r in self.incidents.values()]

    def unconcluded(self) -> list[IncidentRecord]:
        return [r for r in self.snapshot() if r.concluded_by is None]

    def workloads_without_incident(self) -> list[str]:
        with self._lock:
            seen = {r.workload for r in self.incidents.values()}
        return sorted(set(self.broken_at) - seen)

    def done(self) -> bool:
        return not self.workloads_without_incident() and not self.unconcluded()

    def last_change(self) -> float:
        with self._lock:
            times = [r.opened_at for r in self.incidents.values()] + [t for t, _ in self.reports]
            times += [r.concluded_at for r in self.incidents.values() if r.concluded_at is not None]
        return max(times, default=0.0)

    def mttr_fixed(self) -> list[float]:
        """Seconds from breaking a workload to its fixed report, once per fixed workload (its first fix)."""
        first: dict[str, float] = {}
        with self._lock:
            for at, report in self.reports:
                key = f"{report.incident.workload.namespace}/{report.incident.workload.name}"
                if report.outcome is Outcome.FIXED and key not in first:
                    first[key] = at - self.broken_at[key]
        return sorted(first.values())

    def outcomes(self) -> Counter[str]:
        return Counter(r.concluded_by or "NOT concluded" for r in self.snapshot())

    def max_overlap(self) -> int:
        """The most reports whose [started, finished] intervals overlap: sessions worked on at once."""
        with self._lock:
            edges = [(r.started_at.timestamp(), 1) for _, r in self.reports]
            edges += [(r.finished_at.timestamp(), -1) for _, r in self.reports]
        running = peak = 0
        for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
            running += step
            peak = max(peak, running)
        return peak


# ---- samplers --------------------------------------------------------------------------------------
@dataclass
class Probe:
    """Latency of one HTTP path, sampled every second."""

    path: str
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def sample(self, port: int) -> None:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{self.path}", timeout=5) as response:
                response.read()
            self.latencies.append(time.monotonic() - started)
        except OSError as error:
            self.failures.append(f"{time.monotonic() - started:.1f}s: {error}")

    def line(self) -> str:
        if not self.latencies:
            return f"{self.path}: no answer ({len(self.failures)} failures)"
        worst = max(self.latencies)
        return (
            f"{self.path}: {len(self.latencies)} answers, {len(self.failures)} failures; "
            f"p50 {percentile(self.latencies, 0.5) * 1000:.0f} ms, p95 {percentile(self.latencies, 0.95) * 1000:.0f} "
            f"ms, max {worst * 1000:.0f} ms"
        )


class Samplers:
    """Threads: /healthz and /metrics every second, the in-flight incidents, AMOS's Events on the namespaces."""

    def __init__(
        self, api: client.ApiClient, port: int, namespaces: list[str], conclusions: Conclusions, inflight: Any
    ) -> None:
        self.probes = [Probe("/healthz"), Probe("/metrics")]
        self.max_inflight = 0
        self._api = api
        self._port = port
        self._namespaces = namespaces
        self._conclusions = conclusions
        self._inflight = inflight  # () -> int
        self._seen_events: set[str] = set()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=t, daemon=True, name=f"load-{t.__name__}")
            for t in (self._http, self._concurrency, self._events)
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        self.scan_events()

    def _http(self) -> None:
        while not self._stop.wait(1.0):
            for probe in self.probes:
                probe.sample(self._port)

    def _concurrency(self) -> None:
        while not self._stop.wait(0.2):
            self.max_inflight = max(self.max_inflight, int(self._inflight()))

    def _events(self) -> None:
        while not self._stop.wait(EVENT_SCAN_SECONDS):
            self.scan_events()

    def scan_events(self) -> None:
        core = client.CoreV1Api(self._api)
        for namespace in self._namespaces:
            try:
                listing = raw_json(core.list_namespaced_event, namespace)
            except Exception as error:  # noqa: BLE001 - a scan that fails is retried at the next one
                print(f"  (could not list Events in {namespace}: {error})", flush=True)
                continue
            for event in listing.get("items") or []:
                meta = event.get("metadata") or {}
                uid = str(meta.get("uid") or meta.get("name"))
                if event.get("reportingComponent") != "amos" or uid in self._seen_events:
                    continue
                self._seen_events.add(uid)
                involved = event.get("involvedObject") or {}
                if self._conclusions.watched(f"{involved.get('namespace')}/{involved.get('name')}"):
                    self._conclusions.event(str(event.get("reason")), str(event.get("message") or ""), time.time())


# ---- one run -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadConfig:
    deployments: int = 100
    namespaces: int = 10
    bystanders: int = 11  # healthy Deployments per namespace: 10 broken of 21 stays under the outage ratio
    settle_seconds: float = 65.0  # healthy this long before the break: known-good marks (60 s window) are recorded
    timeout_seconds: float = 600.0
    ready_timeout_seconds: float = 600.0


@dataclass
class LoadResult:
    label: str
    settings: Settings
    targets: list[Target]
    conclusions: Conclusions
    broke_in_seconds: float
    break_started: float
    ended: float
    samplers: Samplers
    usage_before: Usage
    usage_after: Usage
    breaker: dict[str, Any]

    @property
    def last_concluded_seconds(self) -> float | None:
        times = [r.concluded_at for r in self.conclusions.snapshot() if r.concluded_at is not None]
        return max(times) - self.break_started if times else None


def free_port() -> int:
    from lab.cluster import free_port as pick

    return pick()


def run_settings(kubeconfig: Path | None, storm_min: int, excluded: list[str], **overrides: Any) -> Settings:
    """Default settings, but this run's storm threshold, one replica, offline diagnoser, a free HTTP port."""
    base = load_settings(model_provider=ModelProvider.OFFLINE)  # config.yaml and AMOS_* variables apply
    values: dict[str, Any] = {
        "kubeconfig": kubeconfig,
        "leader_election": False,
        "http_port": free_port(),
        "http_bind_address": "127.0.0.1",
        "storm_min_workloads": storm_min,
        "excluded_namespaces": [*base.excluded_namespaces, *excluded],
        **overrides,
    }
    return base.model_copy(update=values)


def ready_deployments(api: client.ApiClient, namespace: str) -> int:
    listing = raw_json(client.AppsV1Api(api).list_namespaced_deployment, namespace)
    return sum(
        1
        for d in listing["items"]
        if (d.get("status") or {}).get("readyReplicas") == (d.get("spec") or {}).get("replicas")
    )


def read_breaker(api: client.ApiClient, namespace: str) -> dict[str, Any]:
    try:
        found = client.CoreV1Api(api).read_namespaced_config_map(BREAKER_NAME, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return {"exists": False}
        raise
    data = found.data or {}
    return {
        "exists": True,
        "state": data.get("state", "closed"),
        "reason": data.get("reason", ""),
        "opened-at": data.get("opened-at", ""),
        "actions": len(json.loads(data.get("actions") or "[]")),
    }


def reset_breaker(api: client.ApiClient, namespace: str) -> None:
    """What a person does after a run that opened it: delete the ConfigMap (the budget starts afresh)."""
    try:
        client.CoreV1Api(api).delete_namespaced_config_map(BREAKER_NAME, namespace)
    except client.ApiException as error:
        if error.status != 404:
            raise


def prepare(api: client.ApiClient, namespaces: list[str], targets: list[Target], config: LoadConfig) -> None:
    """Namespaces, bystanders and the restorable Deployments' healthy revisions, all Ready."""
    for namespace in namespaces:
        workloads.create_namespace(api, namespace, {BENCHMARK_LABEL: "load"})
    apps = client.AppsV1Api(api)
    wanted: Counter[str] = Counter()
    for namespace in namespaces:
        for index in range(config.bystanders):
            apps.create_namespaced_deployment(namespace, manifest(healthy_manifest(f"bystander-{index:02d}")))
            wanted[namespace] += 1
    for target in targets:
        if target.fault.restorable:
            apps.create_namespaced_deployment(target.namespace, manifest(healthy_manifest(target.name, target.fault)))
            wanted[target.namespace] += 1
    deadline = time.monotonic() + config.ready_timeout_seconds
    while (ready := sum(ready_deployments(api, ns) for ns in namespaces)) < sum(wanted.values()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {ready}/{sum(wanted.values())} healthy Deployments Ready in time")
        time.sleep(2)


def break_all(api: client.ApiClient, targets: list[Target], broken_at: dict[str, float]) -> float:
    """Break every target (patch or create), `BREAK_WRITERS` at a time; returns how long it took."""
    apps = client.AppsV1Api(api)

    def one(target: Target) -> None:
        broken_at[target.key] = time.time()
        if target.fault.restorable:
            apps.patch_namespaced_deployment(target.name, target.namespace, breaking_patch(target.fault))
        else:
            apps.create_namespaced_deployment(target.namespace, manifest(healthy_manifest(target.name, target.fault)))

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=BREAK_WRITERS, thread_name_prefix="load-break") as pool:
        list(pool.map(one, targets))
    return time.monotonic() - started


def earlier_runs(api: client.ApiClient) -> list[str]:
    """Namespaces of earlier load runs (maybe still terminating): AMOS must not count their incidents."""
    listing = raw_json(client.CoreV1Api(api).list_namespace, label_selector=f"{BENCHMARK_LABEL}=load")
    return sorted(item["metadata"]["name"] for item in listing["items"])


def run_load(api: client.ApiClient, settings: Settings, config: LoadConfig, label: str) -> LoadResult:
    """One configuration: AMOS up, workloads healthy, the break, until every incident is concluded or timeout."""
    from service.app import AmosApp  # the whole service: imported only when a run really starts

    suffix = uuid.uuid4().hex[:4]
    namespaces = [f"load-{suffix}-{i:02d}" for i in range(config.namespaces)]
    targets = fault_plan(config.deployments, namespaces)
    broken_at: dict[str, float] = {t.key: float("inf") for t in targets}
    conclusions = Conclusions(broken_at)
    app = AmosApp(
        settings,
        api,
        serve_http=True,
        on_report=lambda r: conclusions.report(r, time.time()),
        on_incident=lambda i: conclusions.incident(i, time.time()),
    )
    app.start()
    samplers = Samplers(
        api, settings.http_port, namespaces, conclusions, lambda: len(app.orchestrator.dispatcher.active_fingerprints())
    )
    try:
        if not app.watcher.wait_synced(120):
            raise RuntimeError("AMOS watches did not sync within 120 s")
        print(
            f"[{label}] AMOS up; creating {config.namespaces} namespaces with {config.bystanders} bystanders each "
            f"and the healthy revisions",
            flush=True,
        )
        prepare(api, namespaces, targets, config)
        print(f"[{label}] all healthy; {config.settle_seconds:.0f} s for known-good marks", flush=True)
        time.sleep(config.settle_seconds)
        samplers.start()
        before = usage()
        break_started = time.time()
        broke_in = break_all(api, targets, broken_at)
        print(f"[{label}] broke {len(targets)} Deployments in {broke_in:.1f} s; following the incidents", flush=True)
        quiet_from = max(settings.pending_grace_seconds, settings.unavailable_grace_seconds) + 15
        deadline = time.monotonic() + config.timeout_seconds
        next_line = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = time.time()
            if (
                conclusions.done()
                and now - break_started > quiet_from
                and now - conclusions.last_change() > SETTLE_AFTER_LAST_SECONDS
            ):
                break
            if time.monotonic() > next_line:
                next_line += 30
                print(
                    f"[{label}] {now - break_started:.0f} s: {len(conclusions.incidents)} incidents, "
                    f"{len(conclusions.unconcluded())} not concluded, "
                    f"{len(conclusions.workloads_without_incident())} workloads without one",
                    flush=True,
                )
            time.sleep(1)
        ended = time.time()
        after = usage()
    finally:
        samplers.stop()
        app.stop(grace_seconds=30)
    result = LoadResult(
        label,
        settings,
        targets,
        conclusions,
        broke_in,
        break_started,
        ended,
        samplers,
        before,
        after,
        read_breaker(api, settings.store_namespace),
    )
    for namespace in namespaces:
        client.CoreV1Api(api).delete_namespace(namespace, propagation_policy="Background")
    return result


# ---- the report -------------------------------------------------------------------------------------
def print_result(result: LoadResult) -> None:
    c, s = result.conclusions, result.settings
    records = c.snapshot()
    restorable = sum(t.fault.restorable for t in result.targets)
    namespaces = len({t.namespace for t in result.targets})
    print(
        f"\n== {result.label}: storm_min_workloads={s.storm_min_workloads}, actions_per_hour={s.actions_per_hour}, "
        f"max_concurrent_incidents={s.max_concurrent_incidents} =="
    )
    print(
        f"broke {len(result.targets)} Deployments in {namespaces} namespaces in {result.broke_in_seconds:.1f} s "
        f"({restorable} restorable, {len(result.targets) - restorable} not); load average {load_average()}"
    )
    unconcluded = [r for r in records if r.concluded_by is None]
    missing = c.workloads_without_incident()
    print(
        f"incidents: {len(records)} opened on {len({r.workload for r in records})} workloads; "
        f"{len(records) - len(unconcluded)} concluded, {len(unconcluded)} NOT; "
        f"{len(missing)} broken workloads without an incident"
    )
    for how, count in sorted(c.outcomes().items(), key=lambda item: -item[1]):
        print(f"  {count:4d}  {how}")
    for record in unconcluded[:10]:
        print(f"  not concluded: {record.id} {record.kind} on {record.workload}")
    for workload in missing[:10]:
        print(f"  no incident: {workload}")
    last = result.last_concluded_seconds
    everything = not unconcluded and not missing
    print(f"last incident concluded {last:.0f} s after the break" if last is not None else "nothing concluded")
    print(
        verdict(
            f"every incident concluded within {TARGET_SECONDS:.0f} s",
            everything and last is not None and last <= TARGET_SECONDS,
            f"{'all' if everything else 'NOT all'} concluded, last at {last or 0:.0f} s",
        )
    )
    fixed = c.mttr_fixed()
    print(describe(f"MTTR of the fixed workloads ({len(fixed)}/{restorable} restorable)", fixed))
    print(
        f"concurrency: at most {c.max_overlap()} reported incidents worked on at once (overlapping "
        f"started..finished), limit max_concurrent_incidents={s.max_concurrent_incidents}; at most "
        f"{result.samplers.max_inflight} admitted by the dispatcher at once (queued for a worker or running)"
    )
    holds = ", ".join(f"{n} {what}" for what, n in sorted(c.guard_holds.items())) or "none"
    print(f"guard rails that held incidents: {holds}")
    print(
        "AMOS Events on the broken workloads: "
        + (", ".join(f"{reason} {n}" for reason, n in sorted(c.events.items())) or "none")
    )
    b = result.breaker
    if b.get("exists"):
        print(
            f"circuit breaker ({BREAKER_NAME}): state {b['state']}, {b['actions']} actions counted this hour "
            f"(budget {s.actions_per_hour})" + (f", opened {b['opened-at']}: {b['reason']}" if b["reason"] else "")
        )
    else:
        print(f"circuit breaker ({BREAKER_NAME}): never written (no action applied)")
    before, after = result.usage_before, result.usage_after
    print(
        f"AMOS (in this process, with the driver): CPU {cpu_share(before, after):.1%} of one core over "
        f"{after.wall - before.wall:.0f} s; RSS {after.rss_mib:.0f} MiB, peak {after.peak_rss_mib:.0f} MiB"
    )
    for probe in result.samplers.probes:
        print(probe.line())
    responsive = all(p.latencies and not p.failures and max(p.latencies) < 1.0 for p in result.samplers.probes)
    print(
        verdict(
            "/healthz and /metrics answer every sample within 1 s",
            responsive,
            "; ".join(
                f"{p.path} max {max(p.latencies, default=0) * 1000:.0f} ms, {len(p.failures)} failed"
                for p in result.samplers.probes
            ),
        )
    )


@contextmanager
def lab(kubeconfig: Path | None) -> Iterator[Path]:
    """The given cluster, or a lab started (and stopped) here."""
    if kubeconfig is not None:
        yield kubeconfig
        return
    from lab import build
    from lab.cluster import LabCluster

    build.build()
    with tempfile.TemporaryDirectory(prefix="amos-load-") as workdir:
        cluster = LabCluster(Path(workdir))
        print(f"lab started in {cluster.start():.1f} s", flush=True)
        try:
            yield cluster.kubeconfig
        finally:
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--deployments", type=int, default=100, help="Deployments broken at once")
    parser.add_argument("--namespaces", type=int, default=10, help="namespaces they are spread over")
    parser.add_argument("--bystanders", type=int, default=11, help="healthy Deployments per namespace")
    parser.add_argument(
        "--storm-min",
        type=int,
        nargs="+",
        default=[10, 1000],
        help="storm_min_workloads of each run (default: the default 10, then raised to 1000)",
    )
    parser.add_argument("--settle-seconds", type=float, default=65.0, help="healthy this long before the break")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to follow one run's incidents")
    parser.add_argument("--kubeconfig", type=Path, help="an existing lab (python -m lab start); default: start one")
    args = parser.parse_args(argv)
    if args.deployments < 1 or args.namespaces < 1 or any(n < 2 for n in args.storm_min):
        parser.error("--deployments and --namespaces must be at least 1, --storm-min at least 2")
    config = LoadConfig(args.deployments, args.namespaces, args.bystanders, args.settle_seconds, args.timeout)
    from service.kube import connect

    results: list[LoadResult] = []
    with lab(args.kubeconfig) as kubeconfig:
        api = connect(kubeconfig)
        excluded = earlier_runs(api)
        for storm_min in args.storm_min:
            settings = run_settings(kubeconfig, storm_min, excluded)
            reset_breaker(api, settings.store_namespace)  # each run starts with the full budget
            label = "default" if storm_min == Settings.model_fields["storm_min_workloads"].default else "storm raised"
            result = run_load(api, settings, config, label)
            excluded += sorted({t.namespace for t in result.targets})  # the next run does not see this one's
            print_result(result)
            results.append(result)
    return 0 if all(not r.conclusions.unconcluded() for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
