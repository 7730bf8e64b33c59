"""Storm: one Deployment of 50 replicas starts crashing at once. How many incidents and model sessions?

Target: 1 incident and 1 agent session (the fingerprint is the workload + the fault kind,
not the pod). Also prints the time to the fix.

    python -m benchmarks.storm [--replicas 50] [--kubeconfig K]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from kubernetes import client

from benchmarks.kube import manifest as as_body
from core.models import IncidentState
from lab import build
from lab.cluster import LabCluster
from lab.workloads import create_namespace, deployment, rollout_complete, wait_for
from scenarios.run import Collector, amos_on, suite_settings
from service.kube import connect


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--replicas", type=int, default=50)
    parser.add_argument("--kubeconfig", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amos-storm-") as workdir:
        if args.kubeconfig:
            run(args.kubeconfig, args.replicas)
        else:
            build.build()
            with LabCluster(Path(workdir)) as lab:
                run(lab.kubeconfig, args.replicas)


def run(kubeconfig: Path, replicas: int) -> None:
    api = connect(kubeconfig)
    namespace = create_namespace(api, f"storm-{int(time.time())}")
    apps = client.AppsV1Api(api)
    manifest = deployment("storm", "shop/api:2.0", replicas=replicas)
    manifest["spec"]["strategy"] = {"rollingUpdate": {"maxUnavailable": "100%", "maxSurge": "100%"}}
    apps.create_namespaced_deployment(namespace, as_body(manifest))
    wait_for(lambda: rollout_complete(api, namespace, "storm"), timeout=120, what=f"{replicas} ready replicas")
    collector = Collector()
    settings = suite_settings(kubeconfig).model_copy(update={"max_replicas": max(replicas, 50)})
    with amos_on(api, settings, collector):
        injected = time.time()
        apps.patch_namespaced_deployment(
            "storm",
            namespace,
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/api:2.1-crash"}]}}}},
        )
        wait_for(lambda: collector.for_namespace(namespace)[1], timeout=300, interval=1, what="a report")
        time.sleep(10)  # anything else that was going to fire fires now
        incidents, reports = collector.for_namespace(namespace)
    opened = [i for _, i in incidents if i.state is IncidentState.OPEN]
    crashing = {ref.name for _, i in incidents for ref in i.affected}
    sessions = sum(r.attempt for _, r in reports)
    print(f"replicas crashing at once:  {replicas}")
    print(f"incidents opened:           {len(opened)} (target 1); pods listed in them: {len(crashing)}")
    print(f"agent sessions:             {sessions} (target 1)")
    for t, r in reports:
        print(f"outcome:                    {r.outcome.value} after {t - injected:.1f} s ({r.root_cause[:90]})")


if __name__ == "__main__":
    main()
