"""Scale: AMOS watching tens of thousands of healthy pods, then a burst of faults, against a 30 s polling baseline.

Why: issue 18 asks where AMOS stands at 50,000 pods / 5,000 Deployments (the goals: detection
p95 <= 2 s for a burst, RSS <= 250 MB, idle CPU <= 1 % of a core), what a pod costs it, and what
the lab itself costs (API server and etcd memory).

What it does, on a lab cluster with enough KWOK nodes (2,000 pods each; `--lab-nodes` to override):

1. starts the AMOS agent in its own process, so that its RSS and CPU are its own (the lab
   runs in other child processes, and this driver creates the objects): the real `Watcher`
   and `FaultDetector`, default settings, all namespaces;
2. creates `--pods` healthy pods in `--deployments` Deployments (strategy Recreate) spread over
   `--namespaces`, `--batch` Deployments at a time, and waits until they are all ready; prints
   the pod creation rate, the lab's memory, and AMOS's RSS at 5,000 pods and at the end (cost
   per pod = RSS growth / pods);
3. time to first sync: a second, fresh AMOS agent lists every kind against the full cluster, and its
   peak RSS (`--first-sync-only` stops here, without the baseline agent, for memory work);
4. starts the baseline agent, in its own process too: it lists every pod each `--poll-seconds`
   and applies the same `pod_faults` patterns, as scan-based tools do (it starts after the
   creation, which it would slow down: at 50,000 pods each of its lists costs the lab seconds
   of CPU, and it has nothing to find before the burst);
5. idle: both agents watch the healthy pods for `--idle-seconds`; prints CPU and RSS;
6. burst: patches `--burst` Deployments at once, alternately to an image tag that
   does not exist and to a crash-looping tag (Recreate replaces every pod), and
   waits until both agents have reported every broken Deployment;
7. the lab's own cost: RSS of kube-apiserver and etcd (from /proc/<pid>/status).

Detection latency, per broken Deployment and fault kind: the time an agent reported
it minus when the fault became visible in the API: the moment the driver's own watch on
the burst's pods (`benchmarks.fault_clock`) was delivered the first status write showing
it. Both agents are measured from that same moment. Also printed, from the status
timestamps in AMOS's incident (whole seconds, so up to 1 s high): the figure earlier
runs reported. The lab kubelet rewrites `lastTransitionTime` on each status write, so
what a later poll sees would understate the baseline's delay; neither measure uses it.

The Deployments are spread over namespaces (`DEPLOYMENTS_PER_NAMESPACE` by default) as in a
real cluster of this size: the Deployment controller lists a Recreate Deployment's pods from
every pod of its namespace, so one namespace of 50,000 pods made each sync cost O(pods). A lab
started here is a scale lab (`LabCluster(scale=True)`; see lab/cluster.py).

`--tracemalloc` makes the AMOS agents (the long-running one and the first-sync one) trace their allocations
and print where their memory is (tracing costs memory of its own: leave it off for RSS figures).

Run from the repository root (starts a lab unless --kubeconfig points at one):
    python -m benchmarks.scale [--pods 5000] [--deployments 500] [--burst 50]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

from kubernetes import client

from benchmarks.fault_clock import BURST_LABEL, FaultClock
from benchmarks.figures import (
    MB_PER_MIB,
    Usage,
    cpu_share,
    describe,
    kib_field_mib,
    load_average,
    percentile,
    proc_status,
    process_cpu_seconds,
    usage,
    verdict,
    window,
)
from benchmarks.kube import manifest, raw_json
from core.config import Settings, load_settings
from core.models import FaultKind, Incident, IncidentState
from lab import workloads
from monitors.detector import FaultDetector
from monitors.owners import OwnerIndex
from monitors.patterns import pod_faults
from monitors.scope import namespace_in_scope
from monitors.trim import PodView
from monitors.watch import Watcher
from service.kube import connect

HEALTHY_IMAGE = "lab/web:1.0"
BROKEN_IMAGES = ("lab/web:v9.9.9-missing", "lab/web:2.0-crash")
POD_KINDS = frozenset({FaultKind.CRASH_LOOP, FaultKind.IMAGE_PULL})  # what the broken images show
LIST_PAGE_SIZE = 500
PODS_PER_NODE = 2000  # allocatable pods of a lab node
COST_CHECKPOINTS = (5_000, 10_000, 20_000, 30_000, 40_000)  # ready pods where costs are read (and at the end)
DEPLOYMENTS_PER_NAMESPACE = 50
BATCH_LABEL = "benchmarks.amos.io/batch"  # on each Deployment: which creation batch it belongs to
LAB_PROCESSES = ("kube-apiserver", "etcd")
GOAL_P95_SECONDS = 2.0
GOAL_RSS_MB = 250.0
GOAL_IDLE_CPU = 0.01
TRACEMALLOC_TOP = 15

Key = tuple[str, str]  # (Deployment name, fault kind)


class Workload(NamedTuple):
    namespace: str
    name: str  # unique across namespaces: detections are keyed by name


class Checkpoint(NamedTuple):
    """Costs read when `ready` pods were ready."""

    ready: int
    wall: float  # time.monotonic()
    amos: Usage
    lab_cpu_seconds: float  # every lab process together (NaN: not a lab started here or by `python -m lab`)


class Detection(NamedTuple):
    deployment: str
    kind: str
    reported_at: float  # wall clock, epoch seconds
    earliest_change: float | None  # epoch seconds, when the agent knows it


def default_settings() -> Settings:
    """What a plain `python main.py run` would use (config.yaml and AMOS_* variables apply)."""
    return load_settings()


# ---- agents (each runs in its own process) --------------------------------------------------
class AmosAgent:
    """The real Watcher and FaultDetector; records every pod-pattern incident opened on a Deployment."""

    def __init__(self, api: client.ApiClient) -> None:
        self.detections: list[Detection] = []
        self.synced_seconds = 0.0
        self._lock = threading.Lock()
        settings = default_settings()
        self._watcher = Watcher(settings, api, FaultDetector(settings, self._on_incident))

    def start(self) -> None:
        started = time.monotonic()
        self._watcher.start()
        if not self._watcher.wait_synced(600):
            raise RuntimeError("AMOS watch streams not synced after 600 s")
        self.synced_seconds = time.monotonic() - started

    def stop(self) -> None:
        self._watcher.stop()

    def _on_incident(self, incident: Incident) -> None:
        if incident.state is not IncidentState.OPEN or incident.kind not in POD_KINDS:
            return
        reported = time.time()
        earliest = reported - (incident.detected_latency_seconds or 0.0)
        with self._lock:
            self.detections.append(Detection(incident.workload.name, incident.kind.value, reported, earliest))


class PollingAgent:
    """Lists every pod each `interval` seconds and reports a (workload, fault kind) the first poll it shows."""

    def __init__(self, api: client.ApiClient, interval: float) -> None:
        self.detections: list[Detection] = []
        self.synced_seconds = 0.0
        self._core = client.CoreV1Api(api)
        self._interval = interval
        self._settings = default_settings()
        self._owners = OwnerIndex()  # never fed: Deployments resolve by ReplicaSet name, without a watch
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="polling-baseline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            self._poll()
            if self._stop.wait(self._interval):
                return

    def _poll(self) -> None:
        pods: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = raw_json(self._core.list_pod_for_all_namespaces, limit=LIST_PAGE_SIZE, _continue=token)
            pods.extend(page["items"])
            token = page["metadata"].get("continue")
            if not token:
                break
        now = datetime.now(UTC)
        found: list[Detection] = []
        for obj in pods:
            if not namespace_in_scope(obj["metadata"].get("namespace", ""), self._settings):
                continue
            pod = PodView.from_api(obj, (self._settings.ignore_annotation,))
            for fault in pod_faults(pod, self._owners.workload_of(pod), now, self._settings):
                if fault.kind in POD_KINDS and fault.fingerprint not in self._seen:
                    self._seen.add(fault.fingerprint)
                    found.append(Detection(fault.workload.name, fault.kind.value, time.time(), None))
        self.detections.extend(found)


def memory_top(limit: int = TRACEMALLOC_TOP) -> list[str]:
    """Where traced memory is, by line (empty when tracemalloc is off)."""
    if not tracemalloc.is_tracing():
        return []
    stats = tracemalloc.take_snapshot().statistics("lineno")
    return [f"{stat.size / 2**20:7.1f} MiB {stat.count:8d} blocks  {stat.traceback}" for stat in stats[:limit]]


def serve_agent(kind: str, kubeconfig: Path, poll_seconds: float, trace: bool, conn: Connection) -> None:
    """Child process: run one agent and answer the driver's requests (usage, detections, synced, memory, stop)."""
    if trace:
        tracemalloc.start()
    api = connect(kubeconfig, check=False)
    agent: AmosAgent | PollingAgent = AmosAgent(api) if kind.startswith("amos") else PollingAgent(api, poll_seconds)
    agent.start()
    conn.send("started")
    answers: dict[str, Callable[[], object]] = {
        "usage": lambda: tuple(usage()),
        # plain tuples: this module is __mp_main__ here, the driver could not unpickle its classes
        "detections": lambda: [tuple(d) for d in agent.detections],
        "synced": lambda: agent.synced_seconds,
        "memory": memory_top,
    }
    while (request := conn.recv()) != "stop":
        conn.send(answers[request]())
    agent.stop()


@dataclass
class AgentProcess:
    name: str
    process: multiprocessing.process.BaseProcess
    conn: Connection

    def ask(self, request: str) -> Any:
        self.conn.send(request)
        return self.conn.recv()

    def usage(self) -> Usage:
        return Usage(*self.ask("usage"))

    def detections(self) -> list[Detection]:
        return [Detection(*d) for d in self.ask("detections")]

    def stop(self) -> None:
        self.conn.send("stop")
        self.process.join(30)


def spawn_agent(kind: str, kubeconfig: Path, poll_seconds: float, trace: bool = False) -> AgentProcess:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve_agent, args=(kind, kubeconfig, poll_seconds, trace, child), name=kind)
    process.start()
    if not parent.poll(900) or parent.recv() != "started":
        raise RuntimeError(f"{kind} agent did not start")
    return AgentProcess(kind, process, parent)


# ---- the lab's own cost -----------------------------------------------------------------------
def lab_pids(kubeconfig: Path) -> dict[str, int]:
    """The lab's processes, from the state file next to its kubeconfig (a lab started here or by `python -m lab`)."""
    state = kubeconfig.parent / "state.json"
    if not state.exists():
        return {}
    pids: dict[str, int] = json.loads(state.read_text()).get("pids") or {}
    return pids


def lab_cpu_seconds(pids: dict[str, int]) -> float:
    return sum(process_cpu_seconds(pid) for pid in pids.values()) if pids else float("nan")


def lab_memory(pids: dict[str, int]) -> str:
    shown = []
    for name in LAB_PROCESSES:
        status = proc_status(pids[name]) if name in pids else {}
        if status:
            shown.append(
                f"{name} RSS {kib_field_mib(status, 'VmRSS'):.0f} MiB (peak {kib_field_mib(status, 'VmHWM'):.0f})"
            )
        else:
            shown.append(f"{name}: not readable here")
    return ", ".join(shown)


# ---- driver ---------------------------------------------------------------------------------
def deployment(name: str, replicas: int, batch: int = 0) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": {BATCH_LABEL: str(batch)}},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "Recreate"},  # a broken image replaces every pod, not a surge of a few
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": HEALTHY_IMAGE}], "terminationGracePeriodSeconds": 0},
            },
        },
    }


def batch_ready_pods(apps: client.AppsV1Api, batch: int) -> int:
    """Ready pods of one creation batch (listing only its Deployments: all 5,000 were 15 MB of JSON each time)."""
    listing = raw_json(apps.list_deployment_for_all_namespaces, label_selector=f"{BATCH_LABEL}={batch}")
    return sum(d.get("status", {}).get("readyReplicas") or 0 for d in listing["items"])


def spread(count: int, namespaces: list[str]) -> list[Workload]:
    """`count` Deployments named svc-00000... dealt over `namespaces` in turn."""
    return [Workload(namespaces[i % len(namespaces)], f"svc-{i:05d}") for i in range(count)]


def namespaces_for(deployments: int, requested: int | None) -> int:
    return requested or max(1, math.ceil(deployments / DEPLOYMENTS_PER_NAMESPACE))


def shape(pods: int, deployments: int) -> tuple[int, int]:
    """(Deployments, replicas each) for about `pods` pods in `deployments` Deployments (at least one pod each)."""
    if pods < 1 or deployments < 1:
        raise ValueError("--pods and --deployments must be at least 1")
    count = min(pods, deployments)
    return count, max(1, round(pods / count))


def nodes_for(pods: int) -> int:
    """KWOK nodes for `pods` pods with room to spare (a broken Deployment's pods are replaced, not added)."""
    return max(3, math.ceil(pods * 1.1 / PODS_PER_NODE))


def create_healthy(
    apps: client.AppsV1Api,
    targets: list[Workload],
    replicas: int,
    batch: int,
    timeout: float,
    on_ready: Callable[[int], None] = lambda ready: None,
) -> float:
    """Create the Deployments `batch` at a time, keeping at most one batch of pods not yet ready; returns pods/s."""
    started = time.monotonic()
    deadline = started + timeout
    batches = [targets[first : first + batch] for first in range(0, len(targets), batch)]
    ready = 0
    for number, members in enumerate(batches):
        for target in members:
            apps.create_namespaced_deployment(target.namespace, manifest(deployment(target.name, replicas, number)))
        last = number == len(batches) - 1
        for waited in ([number - 1] if number else []) + ([number] if last else []):
            expected = len(batches[waited]) * replicas
            while (seen := batch_ready_pods(apps, waited)) < expected:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"batch {waited}: only {seen}/{expected} pods ready after {timeout:.0f} s")
                time.sleep(1)
            ready += expected
        on_ready(ready)
        elapsed = time.monotonic() - started
        created = sum(len(b) for b in batches[: number + 1]) * replicas
        print(
            f"  {created} pods created, {ready} ready after {elapsed:.0f} s ({ready / elapsed:.0f} pods/s)", flush=True
        )
    return ready / (time.monotonic() - started)


def break_deployments(apps: client.AppsV1Api, targets: list[Workload]) -> None:
    for index, target in enumerate(targets):
        image = BROKEN_IMAGES[index % len(BROKEN_IMAGES)]
        template = {
            "metadata": {"labels": {BURST_LABEL: "1"}},
            "spec": {"containers": [{"name": "app", "image": image}]},
        }
        patch = {"spec": {"template": template}}
        apps.patch_namespaced_deployment(target.name, target.namespace, patch)


def burst_detections(agent: AgentProcess, broken: set[str]) -> dict[Key, Detection]:
    return {(d.deployment, d.kind): d for d in agent.detections() if d.deployment in broken}


def cost_per_pod(baseline: Usage, at: Usage, pods: int) -> str:
    grown = at.rss_mib - baseline.rss_mib
    return f"{grown:.0f} MiB over {pods} pods = {grown * 1024 / pods:.1f} KiB/pod (RSS {at.rss_mib:.0f} MiB)"


def growth_lines(start: Checkpoint, checkpoints: list[Checkpoint]) -> list[str]:
    """How the costs grow: per stretch between checkpoints, the lab's pods/s and CPU per pod; AMOS's RSS per pod so far."""
    lines = []
    previous = start
    for point in checkpoints:
        pods = point.ready - previous.ready
        if pods <= 0:
            continue
        lab_ms = (point.lab_cpu_seconds - previous.lab_cpu_seconds) * 1000 / pods
        lines.append(
            f"  {previous.ready:>6} -> {point.ready:>6} pods: {pods / (point.wall - previous.wall):5.1f} pods/s, "
            f"lab CPU {lab_ms:5.1f} ms/pod; AMOS {cost_per_pod(start.amos, point.amos, point.ready)}"
        )
        previous = point
    return lines


def latencies(found: dict[str, dict[Key, Detection]], visible: dict[Key, float]) -> tuple[list[float], list[float]]:
    """AMOS's and the baseline's detection latencies, both from when the fault became visible in the API."""
    amos = [d.reported_at - visible[k] for k, d in found["amos"].items() if k in visible]
    baseline = [d.reported_at - visible[k] for k, d in found["polling"].items() if k in visible]
    return amos, baseline


def stamped_latencies(found: dict[str, dict[Key, Detection]]) -> list[float]:
    """AMOS's latencies from the status timestamps in its incidents (whole seconds: up to 1 s high)."""
    return [d.reported_at - d.earliest_change for d in found["amos"].values() if d.earliest_change is not None]


def create_namespaces(api: client.ApiClient, count: int) -> list[str]:
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    return [workloads.create_namespace(api, f"{prefix}-{i:03d}") for i in range(count)]


def delete_namespaces(api: client.ApiClient, namespaces: list[str]) -> None:
    for namespace in namespaces:
        client.CoreV1Api(api).delete_namespace(namespace, propagation_policy="Background")


def run(kubeconfig: Path, args: argparse.Namespace) -> None:
    api = connect(kubeconfig)
    apps = client.AppsV1Api(api)
    count, replicas = shape(args.pods, args.deployments)
    namespaces = create_namespaces(api, namespaces_for(count, args.namespaces))
    targets = spread(count, namespaces)
    pods = count * replicas
    pids = lab_pids(kubeconfig)
    print(f"lab before: {lab_memory(pids)}; load average {load_average()}", flush=True)
    amos = spawn_agent("amos", kubeconfig, args.poll_seconds, args.tracemalloc)

    def checkpoint(ready: int) -> Checkpoint:
        return Checkpoint(ready, time.monotonic(), amos.usage(), lab_cpu_seconds(pids))

    origin = checkpoint(0)
    checkpoints: list[Checkpoint] = []

    def at_ready(ready: int) -> None:
        last = checkpoints[-1].ready if checkpoints else 0
        if ready < pods and any(last < c <= ready for c in COST_CHECKPOINTS):
            checkpoints.append(checkpoint(ready))

    print(
        f"AMOS started; creating {pods} pods in {count} Deployments of {replicas} in {len(namespaces)} namespaces "
        f"({namespaces[0]}...)",
        flush=True,
    )
    rate = create_healthy(apps, targets, replicas, args.batch, args.ready_timeout, at_ready)
    end = checkpoint(pods)
    print(f"lab pod creation rate: {rate:.1f} pods/s ({pods} pods; load average {load_average()})")
    print(f"lab at {pods} pods: {lab_memory(pids)}")
    print(window(f"amos while {pods} pods were created", origin.amos, end.amos))
    print("costs as the pods grow:")
    print("\n".join(growth_lines(origin, [*checkpoints, end])))

    cold = spawn_agent("amos-cold", kubeconfig, args.poll_seconds, args.tracemalloc)
    synced = float(cold.ask("synced"))
    cold_usage = cold.usage()
    cold_memory = cold.ask("memory")
    cold.stop()
    print(
        f"time to first sync (a fresh AMOS lists every kind, {pods} pods): {synced:.1f} s; "
        f"its RSS then {cold_usage.rss_mib:.0f} MiB (peak {cold_usage.peak_rss_mib:.0f} MiB)"
    )
    for line in cold_memory:
        print(f"  tracemalloc (first sync): {line}")
    if args.first_sync_only:
        amos.stop()
        delete_namespaces(api, namespaces)
        return

    agents = (amos, spawn_agent("polling", kubeconfig, args.poll_seconds))
    time.sleep(5)  # the last status writes settle
    idle_start = {a.name: a.usage() for a in agents}
    time.sleep(args.idle_seconds)
    idle_end = {a.name: a.usage() for a in agents}
    for agent in agents:
        print(window(f"{agent.name} idle, {pods} healthy pods", idle_start[agent.name], idle_end[agent.name]))

    broken = {t.name for t in targets[: args.burst]}
    expected = len(broken)  # one fault kind per broken Deployment
    print(f"burst: breaking {expected} Deployments ({expected * replicas} pods) at once", flush=True)
    clock = FaultClock(api, default_settings(), frozenset(kind.value for kind in POD_KINDS))
    clock.start()
    burst_start = {a.name: a.usage() for a in agents}
    break_deployments(apps, targets[: args.burst])
    deadline = time.monotonic() + args.burst_timeout
    while time.monotonic() < deadline:
        if all(len(burst_detections(a, broken)) >= expected for a in agents):
            break
        time.sleep(1)
    burst_end = {a.name: a.usage() for a in agents}
    for agent in agents:
        print(window(f"{agent.name} burst", burst_start[agent.name], burst_end[agent.name]))
    print(f"lab after: {lab_memory(pids)}; load average {load_average()}")

    found = {a.name: burst_detections(a, broken) for a in agents}
    clock.stop()
    visible = clock.seen()
    amos_latency, baseline_latency = latencies(found, visible)
    print(
        f"detected: AMOS {len(found['amos'])}/{expected}, baseline {len(found['polling'])}/{expected}; "
        f"the driver's watch saw {len(visible)}/{expected} (started afresh {clock.relists} times)"
    )
    print(describe("AMOS detection latency (fault visible in the API -> incident)", amos_latency))
    print(
        describe(
            "AMOS detection latency from whole-second status stamps (reads up to 1 s high)", stamped_latencies(found)
        )
    )
    print(describe(f"baseline detection latency (poll every {args.poll_seconds:.0f} s)", baseline_latency))
    if amos_latency and baseline_latency:
        a50, b50 = percentile(amos_latency, 0.5), percentile(baseline_latency, 0.5)
        a95, b95 = percentile(amos_latency, 0.95), percentile(baseline_latency, 0.95)
        print(f"AMOS/baseline: p50 {a50 / b50:.2f}, p95 {a95 / b95:.2f}")
        print(verdict(f"detection p95 <= {GOAL_P95_SECONDS:g} s", a95 <= GOAL_P95_SECONDS, f"{a95:.2f} s"))
    else:
        print(verdict(f"detection p95 <= {GOAL_P95_SECONDS:g} s", False, "no detections to measure"))
    peak = max(u.peak_rss_mib for u in (idle_end["amos"], burst_end["amos"]))
    print(
        verdict(
            f"RSS <= {GOAL_RSS_MB:g} MB at {pods} pods",
            peak * MB_PER_MIB <= GOAL_RSS_MB,
            f"idle {idle_end['amos'].rss_mib:.0f} MiB, peak {peak:.0f} MiB = {peak * MB_PER_MIB:.0f} MB",
        )
    )
    idle_cpu = cpu_share(idle_start["amos"], idle_end["amos"])
    print(verdict(f"idle CPU <= {GOAL_IDLE_CPU:.0%} of a core", idle_cpu <= GOAL_IDLE_CPU, f"{idle_cpu:.2%}"))
    for line in amos.ask("memory"):
        print(f"  tracemalloc: {line}")

    for agent in agents:
        agent.stop()
    delete_namespaces(api, namespaces)


@contextmanager
def lab(kubeconfig: Path | None, nodes: int) -> Iterator[Path]:
    """The given cluster, or a lab of `nodes` KWOK nodes started (and stopped) here."""
    if kubeconfig is not None:
        yield kubeconfig
        return
    from lab import build
    from lab.cluster import LabCluster

    build.build()
    with tempfile.TemporaryDirectory(prefix="amos-scale-") as workdir:
        cluster = LabCluster(Path(workdir), nodes=nodes, scale=True)
        print(f"lab ({nodes} nodes) started in {cluster.start():.1f} s", flush=True)
        try:
            yield cluster.kubeconfig
        finally:
            cluster.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000, help="healthy pods to watch")
    parser.add_argument("--deployments", type=int, default=500, help="Deployments the pods belong to")
    parser.add_argument("--burst", "--break", dest="burst", type=int, default=50, help="Deployments broken at once")
    parser.add_argument(
        "--namespaces",
        type=int,
        help=f"namespaces the Deployments are spread over (default: one per {DEPLOYMENTS_PER_NAMESPACE})",
    )
    parser.add_argument("--batch", type=int, default=50, help="Deployments created at a time")
    parser.add_argument("--poll-seconds", type=float, default=30, help="the baseline's polling interval")
    parser.add_argument("--idle-seconds", type=float, default=30, help="how long to measure the idle agents")
    parser.add_argument("--ready-timeout", type=float, default=3600, help="seconds for every pod to be ready")
    parser.add_argument("--burst-timeout", type=float, default=180, help="seconds for both agents to see the burst")
    parser.add_argument(
        "--lab-nodes",
        type=int,
        help=f"KWOK nodes of a lab started here ({PODS_PER_NODE} pods each; default: enough for --pods)",
    )
    parser.add_argument("--tracemalloc", action="store_true", help="trace AMOS's allocations; print the top lines")
    parser.add_argument(
        "--first-sync-only", action="store_true", help="stop after the first-sync figures (no baseline, idle, burst)"
    )
    parser.add_argument("--kubeconfig", type=Path, help="an existing lab (python -m lab start); default: start one")
    args = parser.parse_args(argv)
    try:
        count, _ = shape(args.pods, args.deployments)
    except ValueError as error:
        parser.error(str(error))
    if not 1 <= args.burst <= count:
        parser.error(f"--burst must be between 1 and the number of Deployments ({count})")
    with lab(args.kubeconfig, args.lab_nodes or nodes_for(args.pods)) as kubeconfig:
        run(kubeconfig, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
