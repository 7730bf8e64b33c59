"""AMOS command line: `python main.py [run|check|diagnose|demo] ...`; `run` is the default (service mode).

Global flags may come before or after the command, as with kubectl. Exit codes are
`service.exitcodes.ExitCode`: 0 healthy/passed, 1 fault found, 2 usage or configuration
error, 3 cluster unreachable, 4 internal error. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import NoReturn

from core.config import ConfigError, LoadedConfig, load_config
from core.redaction import Redactor
from service.exitcodes import ExitCode
from service.kube import ClusterUnavailable, KubeconfigInvalid

log = logging.getLogger("amos")
PROG = "python main.py"
EPILOG = (
    "exit codes: 0 healthy (diagnose) or all checks passed, 1 fault found, 2 usage or configuration error "
    "(also: object not found), 3 cluster unreachable, 4 internal error, 130 interrupted"
)


class _Parser(argparse.ArgumentParser):
    """argparse that fails with one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.USAGE, f"amos: {message} (see {PROG} --help)\n")


def version() -> str:
    """The installed package's version, else pyproject.toml's (a plain checkout)."""
    try:
        return metadata.version("amos")
    except metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent / "pyproject.toml"
        return str(tomllib.loads(pyproject.read_text())["project"]["version"])


def _global_flags(parser: argparse.ArgumentParser, *, on_command: bool) -> None:
    # On a command, absent flags must not overwrite what was given before the command.
    default = argparse.SUPPRESS if on_command else None
    parser.add_argument(
        "--config", type=Path, default=default, help="YAML settings file (default: $AMOS_CONFIG or ./config.yaml)"
    )
    parser.add_argument(
        "--kubeconfig", type=Path, default=default, help="kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=argparse.SUPPRESS if on_command else False,
        help="diagnose and report only; change nothing",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS if on_command else 0,
        help="more log output (debug); repeat for library logs",
    )


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="AMOS: watches a Kubernetes cluster, finds the root cause of faults, fixes them safely, reports.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"amos {version()}")
    _global_flags(parser, on_command=False)
    commands = parser.add_subparsers(dest="command", metavar="command", parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog=EPILOG)
        _global_flags(sub, on_command=True)
        return sub

    command("run", "service mode: watch, diagnose, fix, report until SIGTERM (default); checks first, like `check`")
    check = command("check", "preflight: permissions, state namespace, SMTP, model; one line per problem")
    check.add_argument("--send-test-mail", action="store_true", help="also send one test e-mail to engineer_email")
    check.add_argument("-o", "--output", choices=("text", "json"), default="text")
    diagnose = command("diagnose", "one-shot diagnosis of one workload, printed; changes nothing")
    diagnose.add_argument(
        "target",
        nargs="+",
        metavar="TYPE/NAME",
        help="deploy/web, deployments/web, sts/db, ds/x, cj/x, job/x, pod/x (its owner), or TYPE NAME",
    )
    diagnose.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's, else default)")
    diagnose.add_argument("-o", "--output", choices=("text", "json"), default="text")
    command("test-notify", "send a sample report to every configured channel (e-mail, Slack, webhook)")
    command("proposals", "approve mode: list the proposals waiting for a person, with their diffs")
    approve = command("approve", "approve a proposal (annotates its workload as you: RBAC decides who may)")
    approve.add_argument("proposal", metavar="PROPOSAL_ID")
    reject = command("reject", "reject a proposal (annotates its workload as you)")
    reject.add_argument("proposal", metavar="PROPOSAL_ID")
    if importlib.util.find_spec("scenarios") and importlib.util.find_spec("lab"):  # a checkout, not the image
        demo = command("demo", "start the local lab, break a few workloads, watch AMOS fix them")
        demo.add_argument("--keep", action="store_true", help="leave the lab running afterwards (python -m lab stop)")
    return parser


def _load(args: argparse.Namespace) -> LoadedConfig:
    overrides: dict[str, object] = {}
    if args.dry_run:
        overrides["dry_run"] = True
    if args.kubeconfig:
        overrides["kubeconfig"] = args.kubeconfig
    return load_config(args.config, **overrides)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        loaded = _load(args)
    except ConfigError as error:
        for problem in error.problems:
            print(f"amos: configuration error: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    from service import logs

    settings = loaded.settings
    redactor = Redactor()  # one per process: what the service learns from Secrets is hidden in its logs too
    logs.configure(settings.log_json, level=logging.DEBUG if args.verbose else logging.INFO, redactor=redactor)
    if args.verbose > 1:
        for library in ("urllib3", "kubernetes", "httpx", "google_adk", "google_genai"):
            logging.getLogger(library).setLevel(logging.DEBUG)
    if args.command != "check":  # check prints them among its findings
        for warning in loaded.warnings:
            log.warning("configuration: %s", warning)
    try:
        if args.command == "demo":
            from scenarios.demo import run_demo

            return run_demo(settings, keep=args.keep)
        if args.command == "diagnose":
            from service.oneshot import diagnose

            return diagnose(settings, args.target, args.namespace, output=args.output)
        if args.command == "check":
            from service.check import run_check

            return run_check(loaded, send_test_mail=args.send_test_mail, output=args.output)
        if args.command == "test-notify":
            from notifications import run_test_notify

            return run_test_notify(settings)
        if args.command in ("proposals", "approve", "reject"):
            from service import approval_cli
            from service.kube import connect

            api = connect(settings.kubeconfig)
            if args.command == "proposals":
                return approval_cli.list_proposals(settings, api)
            return approval_cli.decide(settings, api, args.proposal, approve=args.command == "approve")
        from service.app import run_service

        return run_service(settings, redactor)
    except KubeconfigInvalid as error:
        print(f"amos: {error}", file=sys.stderr)
        return ExitCode.USAGE
    except ClusterUnavailable as error:
        print(f"amos: cannot reach the cluster: {error}", file=sys.stderr)
        return ExitCode.UNREACHABLE
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except Exception as error:  # the last line of defence: one line, the traceback only with -v
        log.debug("internal error", exc_info=True)
        print(
            f"amos: internal error: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''} "
            "(run with -v for details)",
            file=sys.stderr,
        )
        return ExitCode.INTERNAL


if __name__ == "__main__":
    sys.exit(main())
