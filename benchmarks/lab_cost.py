"""Lab cost: pods/s and CPU per pod of each lab component while healthy Deployments are created.

Why: issue 18 needs 50,000 pods in 15 minutes on 2 cores; this says which component spends the
CPU (kube-apiserver, etcd, controller-manager, scheduler, kwok, the lab kubelet, this driver),
so a change to the lab can be judged by milliseconds per pod rather than by a noisy rate alone.
It creates the pods as `benchmarks.scale` does (same Deployments, batches and namespaces), with
no agent watching.

Run from the repository root:
    python -m benchmarks.lab_cost [--pods 5000] [--default-lab]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import uuid
from pathlib import Path

from kubernetes import client

from benchmarks.figures import kib_field_mib, load_average, proc_status, process_cpu_seconds
from benchmarks.scale import create_healthy, namespaces_for, nodes_for, shape, spread
from lab import build, workloads
from lab.cluster import LabCluster


def cost_lines(before: dict[str, float], after: dict[str, float], pids: dict[str, int], pods: int) -> list[str]:
    """One line per process, then the total: CPU seconds, milliseconds per pod, RSS."""
    lines = []
    for name, pid in pids.items():
        spent = after[name] - before[name]
        rss = kib_field_mib(proc_status(pid), "VmRSS")
        lines.append(f"  {name:24s} {spent:7.1f} s CPU {spent * 1000 / pods:6.2f} ms/pod  RSS {rss:5.0f} MiB")
    total = sum(after[name] - before[name] for name in pids)
    lines.append(f"  {'total':24s} {total:7.1f} s CPU {total * 1000 / pods:6.2f} ms/pod")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lab_cost", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--deployments", type=int, help="default: one per 10 pods")
    parser.add_argument("--namespaces", type=int, help="default: as benchmarks.scale")
    parser.add_argument("--batch", type=int, default=50, help="Deployments created at a time")
    parser.add_argument("--default-lab", action="store_true", help="the default lab, not the scale lab")
    args = parser.parse_args(argv)
    count, replicas = shape(args.pods, args.deployments or max(1, args.pods // 10))
    build.build()
    with tempfile.TemporaryDirectory(prefix="amos-lab-cost-") as workdir:
        cluster = LabCluster(Path(workdir), nodes=nodes_for(args.pods), scale=not args.default_lab)
        print(f"{'default' if args.default_lab else 'scale'} lab started in {cluster.start():.1f} s", flush=True)
        try:
            with cluster.api_client() as api:
                prefix = f"cost-{uuid.uuid4().hex[:6]}"
                namespaces = [
                    workloads.create_namespace(api, f"{prefix}-{i:03d}")
                    for i in range(namespaces_for(count, args.namespaces))
                ]
                pids = {name: process.pid for name, process in cluster.processes.items()} | {"driver": os.getpid()}
                print(f"load average {load_average()}; {count * replicas} pods in {len(namespaces)} namespaces")
                before = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
                rate = create_healthy(client.AppsV1Api(api), spread(count, namespaces), replicas, args.batch, 3600)
                after = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
                print(f"{rate:.1f} pods/s; load average {load_average()}")
                print("\n".join(cost_lines(before, after, pids, count * replicas)))
        finally:
            cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
