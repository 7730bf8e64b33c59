"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, controller-manager,
scheduler, KWOK for the nodes and the lab kubelet for the pods.

Every process is a child started with its own process group, so `stop()` (or the
death of the parent, through PR_SET_PDEATHSIG) leaves no orphan behind. Ports are
free loopback ports picked at start; certificates are fresh per cluster.

A scale lab (`scale=True`, for `benchmarks.scale`) is tuned for tens of thousands of pods;
what a pod goes through is the same, only cheaper:
- the lab kubelet writes no Normal Events for a healthy container's first start
  (`--quiet-starts`); every fault keeps all of its Events;
- the components authenticate with a bearer token: the API server verified the admin
  certificate's chain on every request (6-8 % of its CPU);
- the scheduler has no default PodTopologySpread constraints: scoring a pod counted the
  matching pods on every node, most of the scheduler's CPU at 10,000 pods and growing.
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self, cast

import yaml
from kubernetes import client, config

from lab import build, pki

REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_ANNOTATION = "kwok.x-k8s.io/node"
_PR_SET_PDEATHSIG = 1

# kwok adds its default pod stages when its config has none; one stage that never
# matches keeps kwok's hands off pods, which the lab kubelet runs instead.
_KWOK_CONFIG = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pods-belong-to-the-lab-kubelet
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.annotations["lab.amos.io/kwok-pod-stage"]'
      operator: In
      values: ["never"]
  next: {}
"""


class LabError(RuntimeError):
    """The lab could not start or answer; the message says which component and where its log is."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class LabCluster:
    """One lab cluster living in `workdir` (certificates, etcd data, logs, kubeconfig)."""

    def __init__(self, workdir: Path, *, nodes: int = 3, attached: bool = True, scale: bool = False) -> None:
        self.workdir = workdir.resolve()
        self.node_count = nodes
        self.attached = attached  # attached: children die with this process
        self.scale = scale  # tuned for tens of thousands of pods: see the module docstring
        self.kubeconfig = self.workdir / "kubeconfig"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self._bin = build.bin_dir()
        self._pki: pki.LabPki | None = None
        self._token: str | None = None  # a scale lab's admin token

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> float:
        """Start every component and return how long it took in seconds."""
        started = time.monotonic()
        if not build.is_built():
            raise LabError(f"lab binaries missing in {self._bin}: run `python -m lab.build` first")
        for stale in ("etcd", "logs", "pki"):  # every start is a fresh cluster
            shutil.rmtree(self.workdir / stale, ignore_errors=True)
        (self.workdir / "logs").mkdir(parents=True)
        self._pki = pki.generate(self.workdir / "pki")
        self._token = secrets.token_urlsafe(32) if self.scale else None
        self.ports = {
            name: free_port()
            for name in ("etcd", "etcd-peer", "apiserver", "kcm", "scheduler", "kubelet", "kwok-metrics")
        }
        self._write_kubeconfig()
        deadline = time.monotonic() + timeout
        try:
            self._start_etcd()
            self._wait(lambda: self._http_ok(f"http://127.0.0.1:{self.ports['etcd']}/health"), "etcd", deadline)
            self._start_apiserver()
            self._wait(self._apiserver_ready, "kube-apiserver", deadline)
            self._start_controllers()
            with self.api_client() as api:
                core = client.CoreV1Api(api)
                self._create_nodes(core)
                self._wait(lambda: self._nodes_ready(core), "kwok (nodes Ready)", deadline)
                self._wait(
                    lambda: bool(core.read_namespaced_service_account("default", "default")),
                    "kube-controller-manager",
                    deadline,
                )
        except BaseException:
            self.stop()
            raise
        self._write_state()
        return time.monotonic() - started

    def stop(self) -> None:
        """Stop every component, newest first: SIGTERM, then SIGKILL after a grace period."""
        for name in reversed(list(self.processes)):
            _terminate(self.processes.pop(name))
        (self.workdir / "state.json").unlink(missing_ok=True)

    def restart_apiserver(self, down_seconds: float = 1.0) -> None:
        """Kill the API server and bring it back on the same port (watch-resilience tests)."""
        _terminate(self.processes.pop("kube-apiserver"))
        time.sleep(down_seconds)
        self._start_apiserver()
        self._wait(self._apiserver_ready, "kube-apiserver", time.monotonic() + 60)

    def api_client(self) -> client.ApiClient:
        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        configuration.connection_pool_maxsize = 16
        return client.ApiClient(configuration)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---- components ----------------------------------------------------------------------
    def _spawn(self, name: str, command: list[str], cwd: Path | None = None) -> None:
        log_file = open(self.workdir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child)
        self.processes[name] = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent if self.attached else None,  # noqa: PLW1509 (only sets the parent-death signal)
        )
        log_file.close()

    def _start_etcd(self) -> None:
        client_url = f"http://127.0.0.1:{self.ports['etcd']}"
        peer_url = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn(
            "etcd",
            [
                str(self._bin / "etcd"),
                "--name=lab",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=lab={peer_url}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
        )

    def _start_apiserver(self) -> None:
        assert self._pki is not None
        p = self._pki
        self._spawn(
            "kube-apiserver",
            [
                str(self._bin / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={p.server_cert}",
                f"--tls-private-key-file={p.server_key}",
                f"--client-ca-file={p.ca_cert}",
                f"--service-account-key-file={p.service_account_public_key}",
                f"--service-account-signing-key-file={p.service_account_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                f"--kubelet-client-certificate={p.kubelet_client_cert}",
                f"--kubelet-client-key={p.kubelet_client_key}",
                "--kubelet-preferred-address-types=InternalIP",
                *self._token_auth_flags(),
                "--max-requests-inflight=1000",
                "--max-mutating-requests-inflight=500",
                "--profiling=false",
                "--v=0",
            ],
        )

    def _token_auth_flags(self) -> list[str]:
        if self._token is None:
            return []
        tokens = self.workdir / "pki" / "tokens.csv"
        tokens.write_text(f'{self._token},lab-admin,lab-admin,"system:masters"\n')
        tokens.chmod(0o600)
        return [f"--token-auth-file={tokens}"]

    def _start_controllers(self) -> None:
        assert self._pki is not None
        kubeconfig = f"--kubeconfig={self.kubeconfig}"
        self._spawn(
            "kube-controller-manager",
            [
                str(self._bin / "kube-controller-manager"),
                kubeconfig,
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['kcm']}",
                f"--service-account-private-key-file={self._pki.service_account_key}",
                f"--root-ca-file={self._pki.ca_cert}",
                "--use-service-account-credentials=false",
                "--node-monitor-grace-period=3m20s",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
                "--concurrent-deployment-syncs=10",
                "--concurrent-replicaset-syncs=10",
            ],
        )
        scheduler_config = self.workdir / "scheduler.yaml"
        scheduler_config.write_text(yaml.safe_dump(self._scheduler_config()))
        self._spawn(
            "kube-scheduler",
            [
                str(self._bin / "kube-scheduler"),
                f"--config={scheduler_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}",
            ],
        )
        kwok_config = self.workdir / "kwok.yaml"
        kwok_config.write_text(_KWOK_CONFIG)
        self._spawn(
            "kwok",
            [
                str(self._bin / "kwok"),
                kubeconfig,
                f"--config={kwok_config}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
                "--node-ip=127.0.0.1",
                f"--node-port={self.ports['kubelet']}",
                "--node-lease-duration-seconds=200",
                f"--server-address=127.0.0.1:{self.ports['kwok-metrics']}",
            ],
        )
        self._spawn(
            "lab-kubelet",
            [
                sys.executable,
                "-m",
                "lab.kubelet",
                f"--kubeconfig={self.kubeconfig}",
                f"--port={self.ports['kubelet']}",
                f"--cert={self._pki.server_cert}",
                f"--key={self._pki.server_key}",
                *(["--quiet-starts"] if self.scale else []),
            ],
            cwd=REPO_ROOT,
        )

    def _scheduler_config(self) -> dict[str, Any]:
        profile: dict[str, Any] = {"schedulerName": "default-scheduler"}
        if self.scale:
            spread = {"defaultingType": "List", "defaultConstraints": []}
            profile["pluginConfig"] = [{"name": "PodTopologySpread", "args": spread}]
        return {
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            # the default 50 QPS caps binding at 50 pods/s
            "clientConnection": {"kubeconfig": str(self.kubeconfig), "qps": 500, "burst": 1000},
            "leaderElection": {"leaderElect": False},
            "profiles": [profile],
        }

    def _create_nodes(self, core: client.CoreV1Api) -> None:
        for index in range(self.node_count):
            name = f"kwok-node-{index}"
            core.create_node(
                cast(
                    Any,
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "metadata": {
                            "name": name,
                            "annotations": {NODE_ANNOTATION: "fake"},
                            "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
                        },
                        "status": {
                            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "2000"},
                            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "2000"},
                        },
                    },
                )  # the client sends a dict body as it is; its signature names V1Node
            )

    # ---- readiness -----------------------------------------------------------------------
    def _wait(self, ready: Callable[[], bool], component: str, deadline: float) -> None:
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise LabError(f"{name} exited with {process.returncode}: see {self.workdir / 'logs' / name}.log")
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001, S110 (not up yet: connection refused, 403 before RBAC bootstrap, ...)
                pass
            time.sleep(0.2)
        raise LabError(f"{component} not ready in time: see the logs in {self.workdir / 'logs'}")

    @staticmethod
    def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _apiserver_ready(self) -> bool:
        assert self._pki is not None
        context = ssl.create_default_context(cafile=str(self._pki.ca_cert))
        context.load_cert_chain(str(self._pki.admin_cert), str(self._pki.admin_key))
        return self._http_ok(f"https://127.0.0.1:{self.ports['apiserver']}/readyz", context)

    def _nodes_ready(self, core: client.CoreV1Api) -> bool:
        ready = 0
        for node in core.list_node().items:
            assert node.status is not None
            ready += any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
        return ready >= self.node_count

    # ---- files ---------------------------------------------------------------------------
    def _write_kubeconfig(self) -> None:
        assert self._pki is not None
        document: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "amos-lab",
            "clusters": [
                {
                    "name": "amos-lab",
                    "cluster": {
                        "server": f"https://127.0.0.1:{self.ports['apiserver']}",
                        "certificate-authority": str(self._pki.ca_cert),
                    },
                }
            ],
            "users": [{"name": "lab-admin", "user": self._kubeconfig_user()}],
            "contexts": [{"name": "amos-lab", "context": {"cluster": "amos-lab", "user": "lab-admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(document))

    def _kubeconfig_user(self) -> dict[str, str]:
        assert self._pki is not None
        if self._token is not None:
            return {"token": self._token}
        return {"client-certificate": str(self._pki.admin_cert), "client-key": str(self._pki.admin_key)}

    def _write_state(self) -> None:
        state = {
            "kubeconfig": str(self.kubeconfig),
            "ports": self.ports,
            "pids": {name: process.pid for name, process in self.processes.items()},
        }
        (self.workdir / "state.json").write_text(json.dumps(state, indent=2))


def _terminate(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def stop_detached(workdir: Path) -> bool:
    """Stop a cluster started by another process (`python -m lab start`); False if none was running."""
    state_file = workdir / "state.json"
    if not state_file.exists():
        return False
    pids: dict[str, int] = json.loads(state_file.read_text())["pids"]
    for pid in reversed(list(pids.values())):
        _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for pid in pids.values():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            _signal_group(pid, signal.SIGKILL)
    state_file.unlink()
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
