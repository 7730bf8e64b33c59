"""AMOS command line: `python main.py [run|demo|diagnose] ...`; `run` is the default (service mode)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from core.config import ConfigError, load_settings
from service.kube import ClusterUnavailable

log = logging.getLogger("amos")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="AMOS: watches a Kubernetes cluster, finds the root cause of faults, fixes them safely, reports.",
    )
    parser.add_argument("--config", type=Path, help="YAML settings file (default: $AMOS_CONFIG or ./config.yaml)")
    parser.add_argument("--kubeconfig", type=Path, help="kubeconfig to use (default: $KUBECONFIG, in-cluster, ~/.kube)")
    parser.add_argument("--dry-run", action="store_true", help="diagnose and report only; change nothing")
    commands = parser.add_subparsers(dest="command", metavar="command")
    commands.add_parser("run", help="service mode: watch, diagnose, fix, report until SIGTERM (default)")
    demo = commands.add_parser("demo", help="start the local lab, break a few workloads, watch AMOS fix them")
    demo.add_argument("--keep", action="store_true", help="leave the lab running afterwards (python -m lab stop)")
    diagnose = commands.add_parser("diagnose", help="one-shot diagnosis of one workload, printed; changes nothing")
    diagnose.add_argument("target", help="kind/name, e.g. deployment/web")
    diagnose.add_argument("-n", "--namespace", default="default")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, object] = {}
    if args.dry_run:
        overrides["dry_run"] = True
    if args.kubeconfig:
        overrides["kubeconfig"] = args.kubeconfig
    try:
        settings = load_settings(args.config, **overrides)
    except ConfigError as error:
        print(f"amos: configuration error: {error}", file=sys.stderr)
        return 2
    from service import logs

    logs.configure(settings.log_json)
    try:
        if args.command == "demo":
            from service.demo import run_demo

            return run_demo(settings, keep=args.keep)
        if args.command == "diagnose":
            from service.oneshot import diagnose

            return diagnose(settings, args.target, args.namespace)
        from service.app import run_service

        return run_service(settings)
    except ClusterUnavailable as error:
        print(f"amos: cannot reach the cluster: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
