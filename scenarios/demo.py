"""`python main.py demo`: the lab, four broken workloads, and AMOS fixing or escalating each, on screen.

It needs the repository (the lab is not part of the image).

No cluster and no key needed: it starts the local control plane, runs AMOS with the
offline diagnoser (or the configured model), and prints every report as the
engineer would receive it by e-mail.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from core.config import Settings
from lab import build
from lab.cluster import LabCluster, stop_detached
from notifications import render_report
from scenarios.catalog import SCENARIOS
from scenarios.run import Collector, ScenarioResult, amos_on, print_table, run_scenario, suite_settings, summarize
from service.kube import connect

DEMO_SCENARIOS = ("bad-image-rollout", "oom-lowered-limit", "bad-env", "missing-configmap")
LAB_DIR = Path(".lab")


def run_demo(settings: Settings, keep: bool = False) -> int:
    build.build()
    stop_detached(LAB_DIR)
    workdir = LAB_DIR if keep else Path(tempfile.mkdtemp(prefix="amos-demo-"))
    lab = LabCluster(workdir, attached=not keep)
    print("starting the lab control plane ... ", end="", flush=True)
    print(f"up in {lab.start():.1f} s (kubeconfig: {lab.kubeconfig})")
    try:
        api = connect(lab.kubeconfig)
        demo_settings = suite_settings(lab.kubeconfig, settings)
        collector = Collector()
        results: list[ScenarioResult] = []
        with amos_on(api, demo_settings, collector):
            for scenario in (s for s in SCENARIOS if s.name in DEMO_SCENARIOS):
                print(f"\n=== injecting: {scenario.description} ({scenario.name})", flush=True)
                result = run_scenario(api, scenario, collector)
                results.append(result)
                _, reports = collector.for_namespace(result.namespace)
                for _, report in reports[-len(scenario.faulty) :]:
                    rendered = render_report(report)
                    print(f"\n--- e-mail to the engineer: {rendered.subject}\n{rendered.text}")
        print("\n=== summary")
        print_table(summarize(results), repeat=1)
        if keep:
            print(f"\nthe lab keeps running: export KUBECONFIG={lab.kubeconfig}; stop it with `python -m lab stop`")
        return 0 if all(r.passed for r in results) else 1
    finally:
        if not keep:
            lab.stop()
