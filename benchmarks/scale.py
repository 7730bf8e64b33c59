"""Scale: AMOS watching thousands of healthy pods, then a burst of faults, against a 30 s polling baseline.

Why: issue 7 asks where AMOS stands on two goals at 5,000 pods, detection p95 <= 2 s
and RSS <= 200 MB, and how it compares with the scan-based tools it replaces.

What it does, on a lab cluster with `--lab-nodes` KWOK nodes (2,000 pods each):

1. starts two agents, each in its own process so that its RSS and CPU are its own
   (the lab runs in other child processes, and this driver creates the objects):
   - AMOS: the real `Watcher` and `FaultDetector`, default settings, all namespaces;
   - the baseline: lists every pod each `--poll-seconds` and applies the same
     `pod_faults` patterns, as scan-based tools do;
2. creates `--pods` healthy pods in Deployments of `--replicas` (strategy Recreate),
   `--batch` Deployments at a time, and waits until they are all ready;
3. idle: both agents watch the healthy pods for `--idle-seconds`; prints CPU and RSS;
4. burst: patches `--break` Deployments at once, alternately to an image tag that
   does not exist and to a crash-looping tag (Recreate replaces every pod), and
   waits until both agents have reported every broken Deployment.

Detection latency, per broken Deployment and fault kind: the time an agent reported
it minus the earliest status change showing the fault. AMOS sees every status
write, so the earliest change is the one in its incident; the baseline is measured
against that same time (the lab kubelet rewrites `lastTransitionTime` on each
status write, so what a later poll sees would understate the baseline's delay).
API timestamps have whole seconds: latencies read up to 1 s high, for both.

Run from the repository root (starts a lab unless --kubeconfig points at one):
    python -m benchmarks.scale [--pods 5000] [--break 50]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

from kubernetes import client, config

from benchmarks.detection_latency import create_namespace, percentile
from core.config import Settings
from core.models import FaultKind, Incident, IncidentState
from monitors.detector import FaultDetector
from monitors.owners import OwnerIndex
from monitors.patterns import pod_faults
from monitors.scope import namespace_in_scope
from monitors.trim import PodView
from monitors.watch import Watcher

HEALTHY_IMAGE = "lab/web:1.0"
BROKEN_IMAGES = ("lab/web:v9.9.9-missing", "lab/web:2.0-crash")
POD_KINDS = frozenset({FaultKind.CRASH_LOOP, FaultKind.IMAGE_PULL})  # what the broken images show
LIST_PAGE_SIZE = 500

Key = tuple[str, str]  # (Deployment name, fault kind)


class Usage(NamedTuple):
    """One process's resources at one moment."""

    wall: float  # time.monotonic()
    cpu_seconds: float  # user + system, every thread
    rss_mib: float
    peak_rss_mib: float


class Detection(NamedTuple):
    deployment: str
    kind: str
    reported_at: float  # wall clock, epoch seconds
    earliest_change: float | None  # epoch seconds, when the agent knows it


def usage() -> Usage:
    rusage = resource.getrusage(resource.RUSAGE_SELF)
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return Usage(time.monotonic(), rusage.ru_utime + rusage.ru_stime,
                 int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024)


def api_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.connection_pool_maxsize = 16
    return client.ApiClient(configuration)


# ---- agents (each runs in its own process) --------------------------------------------------
class AmosAgent:
    """The real Watcher and FaultDetector; records every pod-pattern incident opened on a Deployment."""

    def __init__(self, api: client.ApiClient) -> None:
        self.detections: list[Detection] = []
        self._lock = threading.Lock()
        self._watcher = Watcher(Settings(), api, FaultDetector(Settings(), self._on_incident))

    def start(self) -> None:
        self._watcher.start()
        if not self._watcher.wait_synced(60):
            raise RuntimeError("AMOS watch streams not synced after 60 s")

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
        self._core = client.CoreV1Api(api)
        self._interval = interval
        self._settings = Settings()
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
            page = json.loads(self._core.list_pod_for_all_namespaces(
                limit=LIST_PAGE_SIZE, _continue=token, _preload_content=False).data)
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


def serve_agent(kind: str, kubeconfig: Path, poll_seconds: float, conn: Connection) -> None:
    """Child process: run one agent and answer the driver's requests ("usage", "detections", "stop")."""
    with api_client(kubeconfig) as api:
        agent: AmosAgent | PollingAgent = AmosAgent(api) if kind == "amos" else PollingAgent(api, poll_seconds)
        agent.start()
        conn.send("started")
        while (request := conn.recv()) != "stop":
            # plain tuples: this module is __mp_main__ here, the driver could not unpickle its classes
            conn.send(tuple(usage()) if request == "usage" else [tuple(d) for d in agent.detections])
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


def spawn_agent(kind: str, kubeconfig: Path, poll_seconds: float) -> AgentProcess:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve_agent, args=(kind, kubeconfig, poll_seconds, child), name=kind)
    process.start()
    if not parent.poll(120) or parent.recv() != "started":
        raise RuntimeError(f"{kind} agent did not start")
    return AgentProcess(kind, process, parent)


# ---- driver ---------------------------------------------------------------------------------
def deployment(name: str, replicas: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "Recreate"},  # a broken image replaces every pod, not a surge of a few
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": HEALTHY_IMAGE}],
                                  "terminationGracePeriodSeconds": 0}},
        },
    }


def ready_pods(apps: client.AppsV1Api, namespace: str) -> int:
    listing = json.loads(apps.list_namespaced_deployment(namespace, _preload_content=False).data)
    return sum(d.get("status", {}).get("readyReplicas") or 0 for d in listing["items"])


def create_healthy(apps: client.AppsV1Api, namespace: str, names: list[str], replicas: int, batch: int,
                   timeout: float) -> None:
    """Create the Deployments `batch` at a time, keeping at most one batch of pods not yet ready."""
    started = time.monotonic()
    deadline = started + timeout
    total = len(names) * replicas
    for first in range(0, len(names), batch):
        for name in names[first:first + batch]:
            apps.create_namespaced_deployment(namespace, deployment(name, replicas))
        created = min(len(names), first + batch) * replicas
        target = total if created == total else created - batch * replicas
        while (ready := ready_pods(apps, namespace)) < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {ready}/{created} pods ready after {timeout:.0f} s")
            time.sleep(2)
        elapsed = time.monotonic() - started
        print(f"  {created} pods created, {ready} ready after {elapsed:.0f} s ({ready / elapsed:.0f} pods/s)",
              flush=True)


def break_deployments(apps: client.AppsV1Api, namespace: str, names: list[str]) -> None:
    for index, name in enumerate(names):
        image = BROKEN_IMAGES[index % len(BROKEN_IMAGES)]
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
        apps.patch_namespaced_deployment(name, namespace, patch)


def describe(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no samples"
    return (f"{name}: n={len(values)} p50={percentile(values, 0.5):.2f}s p95={percentile(values, 0.95):.2f}s "
            f"max={max(values):.2f}s mean={statistics.fmean(values):.2f}s")


def window(name: str, before: Usage, after: Usage) -> str:
    cpu = after.cpu_seconds - before.cpu_seconds
    wall = after.wall - before.wall
    return (f"{name}: CPU {cpu:.1f} s over {wall:.0f} s ({cpu / wall:.1%} of one core), "
            f"RSS {after.rss_mib:.0f} MiB (peak {after.peak_rss_mib:.0f} MiB)")


def burst_detections(agent: AgentProcess, broken: set[str]) -> dict[Key, Detection]:
    return {(d.deployment, d.kind): d for d in agent.detections() if d.deployment in broken}


def run(kubeconfig: Path, args: argparse.Namespace) -> None:
    with api_client(kubeconfig) as api:
        apps = client.AppsV1Api(api)
        namespace = create_namespace(api)
        names = [f"svc-{i:04d}" for i in range(args.pods // args.replicas)]
        pods = len(names) * args.replicas
        amos = spawn_agent("amos", kubeconfig, args.poll_seconds)
        baseline = spawn_agent("polling", kubeconfig, args.poll_seconds)
        agents = (amos, baseline)
        start = {a.name: a.usage() for a in agents}
        print(f"agents started; creating {pods} pods in {len(names)} Deployments in {namespace}", flush=True)
        create_healthy(apps, namespace, names, args.replicas, args.batch, args.ready_timeout)
        created = {a.name: a.usage() for a in agents}
        for agent in agents:
            print(window(f"{agent.name} while {pods} pods were created", start[agent.name], created[agent.name]))

        time.sleep(5)  # the last status writes settle
        idle_start = {a.name: a.usage() for a in agents}
        time.sleep(args.idle_seconds)
        idle_end = {a.name: a.usage() for a in agents}
        for agent in agents:
            print(window(f"{agent.name} idle, {pods} healthy pods", idle_start[agent.name], idle_end[agent.name]))

        broken = set(names[:args.break_count])
        expected = len(broken)  # one fault kind per broken Deployment
        print(f"burst: breaking {expected} Deployments ({expected * args.replicas} pods) at once", flush=True)
        burst_start = {a.name: a.usage() for a in agents}
        break_deployments(apps, namespace, sorted(broken))
        deadline = time.monotonic() + args.burst_timeout
        while time.monotonic() < deadline:
            if all(len(burst_detections(a, broken)) >= expected for a in agents):
                break
            time.sleep(1)
        burst_end = {a.name: a.usage() for a in agents}
        for agent in agents:
            print(window(f"{agent.name} burst", burst_start[agent.name], burst_end[agent.name]))

        found = {a.name: burst_detections(a, broken) for a in agents}
        amos_latency = {k: d.reported_at - d.earliest_change for k, d in found["amos"].items()
                        if d.earliest_change is not None}
        baseline_latency = {k: d.reported_at - found["amos"][k].earliest_change  # type: ignore[operator]
                            for k, d in found["polling"].items() if k in amos_latency}
        print(f"detected: AMOS {len(found['amos'])}/{expected}, baseline {len(found['polling'])}/{expected}")
        print(describe("AMOS detection latency (status change -> incident)", list(amos_latency.values())))
        print(describe(f"baseline detection latency (poll every {args.poll_seconds:.0f} s)",
                       list(baseline_latency.values())))
        if amos_latency and baseline_latency:
            a50, b50 = percentile(list(amos_latency.values()), 0.5), percentile(list(baseline_latency.values()), 0.5)
            a95, b95 = percentile(list(amos_latency.values()), 0.95), percentile(list(baseline_latency.values()), 0.95)
            print(f"AMOS/baseline: p50 {a50 / b50:.2f}, p95 {a95 / b95:.2f}")
            print(f"goal detection p95 <= 2 s: {'met' if a95 <= 2 else 'NOT met'} ({a95:.2f} s)")
        peak = max(u.peak_rss_mib for u in (idle_end["amos"], burst_end["amos"]))
        print(f"goal RSS <= 200 MB at {pods} pods: {'met' if peak * 1.048576 <= 200 else 'NOT met'} "
              f"(peak {peak:.0f} MiB = {peak * 1.048576:.0f} MB)")

        for agent in agents:
            agent.stop()
        client.CoreV1Api(api).delete_namespace(namespace, propagation_policy="Background")


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
        cluster = LabCluster(Path(workdir), nodes=nodes)
        print(f"lab ({nodes} nodes) started in {cluster.start():.1f} s", flush=True)
        try:
            yield cluster.kubeconfig
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000, help="healthy pods to watch")
    parser.add_argument("--replicas", type=int, default=10, help="pods per Deployment")
    parser.add_argument("--break", dest="break_count", type=int, default=50, help="Deployments broken at once")
    parser.add_argument("--batch", type=int, default=50, help="Deployments created at a time")
    parser.add_argument("--poll-seconds", type=float, default=30, help="the baseline's polling interval")
    parser.add_argument("--idle-seconds", type=float, default=30, help="how long to measure the idle agents")
    parser.add_argument("--ready-timeout", type=float, default=1800, help="seconds for every pod to be ready")
    parser.add_argument("--burst-timeout", type=float, default=180, help="seconds for both agents to see the burst")
    parser.add_argument("--lab-nodes", type=int, default=4, help="KWOK nodes of a lab started here (2,000 pods each)")
    parser.add_argument("--kubeconfig", type=Path, help="an existing lab (python -m lab start); default: start one")
    args = parser.parse_args()
    with lab(args.kubeconfig, args.lab_nodes) as kubeconfig:
        run(kubeconfig, args)


if __name__ == "__main__":
    main()
