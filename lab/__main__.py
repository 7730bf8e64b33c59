"""Start or stop the lab control plane from a shell.

python -m lab start [--workdir .lab] [--nodes 3]   # builds if needed, prints `export KUBECONFIG=...`
python -m lab stop  [--workdir .lab]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab import build
from lab.cluster import LabCluster, LabError, stop_detached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description="the AMOS lab control plane")
    parser.add_argument("command", choices=("start", "stop"))
    parser.add_argument("--workdir", type=Path, default=Path(".lab"), help="where certificates, data and logs live")
    parser.add_argument("--nodes", type=int, default=3, help="KWOK nodes to register")
    args = parser.parse_args(argv)
    if args.command == "stop":
        print("lab stopped" if stop_detached(args.workdir) else f"no lab running in {args.workdir}")
        return 0
    stop_detached(args.workdir)
    build.build()
    cluster = LabCluster(args.workdir, nodes=args.nodes, attached=False)
    try:
        seconds = cluster.start()
    except LabError as error:
        print(f"lab failed to start: {error}", file=sys.stderr)
        return 1
    print(f"lab started in {seconds:.1f} s; logs in {args.workdir / 'logs'}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
