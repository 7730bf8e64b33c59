"""Detection latency and memory of the monitors at scale, on the lab cluster.

Creates N broken pods (through Deployments of `--replicas` each, cycling through a
crash loop, an image that does not exist, an OOM kill and a missing ConfigMap),
runs the real Watcher and FaultDetector, and prints:

- incident latency: emission time - the earliest status change (the incident's
  `detected_latency_seconds`); API timestamps have whole seconds, so this reads
  up to 1 s high;
- pod lag: when the watcher handed a pod's first fault to the detector - that
  fault's status change (same 1 s caveat): what it costs to watch N pods;
- resident memory before and after, the detector's sizes, and the size of a
  trimmed pod view against the full object.

Run from the repository root (starts a lab unless --kubeconfig points at one):
    python -m benchmarks.detection_latency --pods 2000
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client

from benchmarks.figures import describe, usage
from benchmarks.kube import manifest, raw_json
from core.config import load_settings
from core.models import Fault, Incident, IncidentState, ObjectRef
from lab import workloads
from monitors.detector import FaultDetector
from monitors.trim import PodView
from monitors.watch import Watcher
from service.kube import connect

BREAKAGES: list[dict[str, Any]] = [
    {"image": "lab/web:2.0-crash"},
    {"image": "lab/web:v9.9.9-missing"},
    {
        "image": "lab/web:1.0",
        "env": [{"name": "LAB_MEMORY_MI", "value": "256"}],
        "resources": {"limits": {"memory": "64Mi"}},
    },
    {
        "image": "lab/web:1.0",
        "env": [{"name": "DB", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "db"}}}],
    },
]


class TimedDetector(FaultDetector):
    """Records, per pod, when its first fault reached the detector and the fault's status-change time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_fault: dict[ObjectRef, tuple[datetime, datetime | None]] = {}
        self._seen_lock = threading.Lock()

    def observe(self, subject: ObjectRef, faults: list[Fault], now: datetime | None = None) -> None:
        if faults and subject.kind == "Pod":
            with self._seen_lock:
                if subject not in self.first_fault:
                    sinces = [f.evidence.since for f in faults if f.evidence.since is not None]
                    self.first_fault[subject] = (datetime.now(UTC), min(sinces) if sinces else None)
        super().observe(subject, faults, now)


@contextmanager
def lab_api(kubeconfig: Path | None) -> Iterator[client.ApiClient]:
    """An ApiClient on the given cluster, or on a lab started (and stopped) here."""
    cluster = None
    if kubeconfig is None:
        from lab import build
        from lab.cluster import LabCluster

        build.build()
        cluster = LabCluster(Path(tempfile.mkdtemp(prefix="amos-bench-")))
        print(f"lab started in {cluster.start():.1f} s")
        kubeconfig = cluster.kubeconfig
    try:
        with connect(kubeconfig) as api:
            yield api
    finally:
        if cluster is not None:
            cluster.stop()


def create_namespace(api: client.ApiClient) -> str:
    return workloads.create_namespace(api, f"bench-{uuid.uuid4().hex[:6]}")


def deployment(name: str, replicas: int, breakage: dict[str, Any]) -> dict[str, Any]:
    container = {"name": "app", **breakage}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
            },
        },
    }


def trim_ratio(api: client.ApiClient, namespace: str) -> tuple[float, float]:
    """Mean bytes of a full pod (as JSON) and of its trimmed view."""
    pods = raw_json(client.CoreV1Api(api).list_namespaced_pod, namespace, limit=200)["items"]
    full = [len(json.dumps(p)) for p in pods]
    trimmed = [len(PodView.from_api(p, ("amos.io/ignore",)).model_dump_json()) for p in pods]
    return statistics.fmean(full), statistics.fmean(trimmed)


def run(api: client.ApiClient, pods: int, replicas: int, timeout: float) -> None:
    namespace = create_namespace(api)
    # Deployment-level patterns wait out a grace period by design; measure the pod patterns only.
    settings = load_settings(namespaces=[namespace], unavailable_grace_seconds=3600)
    incidents: list[Incident] = []
    detector = TimedDetector(settings, incidents.append)
    watcher = Watcher(settings, api, detector)
    rss_before = usage().rss_mib
    watcher.start()
    watcher.wait_synced(30)

    names = [f"svc-{i:03d}" for i in range((pods + replicas - 1) // replicas)]
    apps = client.AppsV1Api(api)
    started = time.monotonic()
    for index, name in enumerate(names):
        count = min(replicas, pods - index * replicas)
        apps.create_namespaced_deployment(
            namespace, manifest(deployment(name, count, BREAKAGES[index % len(BREAKAGES)]))
        )
    print(f"created {len(names)} Deployments ({pods} pods) in {namespace} in {time.monotonic() - started:.1f} s")

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        opened = {i.workload.name for i in incidents if i.state is IncidentState.OPEN}
        if len(opened) >= len(names) and len(detector.first_fault) >= pods:
            break
        time.sleep(1)
    elapsed = time.monotonic() - started
    opened_incidents = [i for i in incidents if i.state is IncidentState.OPEN]
    print(
        f"after {elapsed:.1f} s: {len(opened_incidents)} incidents for {len(names)} Deployments, "
        f"{len(detector.first_fault)}/{pods} faulty pods seen"
    )

    if detector.first_fault:
        last = max(seen for seen, _ in detector.first_fault.values())
        first = min(seen for seen, _ in detector.first_fault.values())
        print(f"pods turned faulty over {(last - first).total_seconds():.1f} s (the lab's pace)")
    for kind in sorted({i.kind for i in opened_incidents}):
        latencies = [i.detected_latency_seconds or 0.0 for i in opened_incidents if i.kind is kind]
        print(describe(f"incident latency {kind.value} (status change -> incident)", latencies))
    latencies = [i.detected_latency_seconds or 0.0 for i in opened_incidents]
    print(describe("incident latency, all kinds", latencies))
    lags = [(seen - since).total_seconds() for seen, since in detector.first_fault.values() if since is not None]
    print(describe("pod lag (status change -> detector)", lags))
    full, trimmed = trim_ratio(api, namespace)
    print(f"pod JSON {full:.0f} B, trimmed view {trimmed:.0f} B ({trimmed / full:.0%})")
    print(
        f"RSS {rss_before:.0f} MiB before watching, {usage().rss_mib:.0f} MiB with {pods} faulty pods; "
        f"detector {detector.sizes()}; reconnects {watcher.reconnects}"
    )

    watcher.stop()
    client.CoreV1Api(api).delete_namespace(namespace, propagation_policy="Background")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pods", type=int, default=2000)
    parser.add_argument("--replicas", type=int, default=20, help="pods per Deployment")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for every pod to fail")
    parser.add_argument("--kubeconfig", type=Path, help="an existing lab (python -m lab start); default: start one")
    args = parser.parse_args()
    with lab_api(args.kubeconfig) as api:
        run(api, args.pods, args.replicas, args.timeout)


if __name__ == "__main__":
    main()
