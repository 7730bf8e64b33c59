"""The lab kubelet: plays the container runtime for every pod bound to a KWOK node.

KWOK keeps the fake nodes alive (registration, heartbeats, leases); this process
does what a kubelet does for pods: decide each container's fate from its spec
(`lab.programs`), write pod status the way a kubelet writes it (waiting reasons,
restart counts, lastState, exit codes, conditions), emit kubelet Events, keep
container logs (current and previous) and serve them to the API server's
`pods/log` proxy, and finish graceful deletions. Crash-looping containers restart
with a back-off that doubles, like the real one, on a shorter lab clock.

Run: python -m lab.kubelet --kubeconfig K --port P --cert C --key K
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from lab.logserver import LogStore, serve_logs
from lab.programs import Behaviour, Fate, decide

log = logging.getLogger("lab.kubelet")

BACKOFF_BASE_SECONDS = 2.0  # the real kubelet starts at 10 s; the lab clock is 5x faster
BACKOFF_CAP_SECONDS = 20.0  # the real cap is 300 s
START_SECONDS = 0.4  # pull + create + start of a container
CRASH_AFTER_SECONDS = 0.6  # how long a crashing program runs before it dies
CONFIG_RECHECK_SECONDS = 2.0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerSim:
    name: str
    image: str
    behaviour: Behaviour
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    backoff: float = BACKOFF_BASE_SECONDS


@dataclass
class PodSim:
    namespace: str
    name: str
    uid: str
    node: str
    restart_policy: str
    containers: list[ContainerSim]
    spec_containers: list[dict[str, Any]]
    pod_ip: str
    start_time: str
    phase: str = "Pending"
    finished: bool = False


class LabKubelet:
    """Level-driven: each pod has a next due step; one worker runs due steps and patches status."""

    def __init__(self, api: client.ApiClient, log_store: LogStore) -> None:
        self.core = client.CoreV1Api(api)
        self.logs = log_store
        self._pods: dict[str, PodSim] = {}
        self._due: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._lock = threading.Condition()
        self._ip_counter = itertools.count(2)
        self._writers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lab-kubelet-write")
        self._events: dict[tuple[str, str, str, str], tuple[str, int]] = {}
        self._stop = threading.Event()

    # ---- pod lifecycle -------------------------------------------------------------------
    def _exists(self, namespace: str) -> Any:
        def exists(kind: str, name: str, key: str | None) -> bool:
            try:
                if kind == "configmap":
                    obj = self.core.read_namespaced_config_map(name, namespace)
                    data = {**(obj.data or {}), **(obj.binary_data or {})}
                else:
                    obj = self.core.read_namespaced_secret(name, namespace)
                    data = {**(obj.data or {}), **(obj.string_data or {})}
            except ApiException as error:
                if error.status == 404:
                    return False
                raise
            return key is None or key in data

        return exists

    def _new_pod(self, pod: dict[str, Any]) -> PodSim:
        meta, spec = pod["metadata"], pod["spec"]
        index = next(self._ip_counter)
        return PodSim(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            node=spec["nodeName"],
            restart_policy=spec.get("restartPolicy", "Always"),
            containers=[],
            spec_containers=spec.get("containers", []),
            pod_ip=f"10.244.{index // 250 % 250}.{index % 250 + 1}",
            start_time=_now(),
        )

    def on_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        if event_type == "DELETED":
            with self._lock:
                self._pods.pop(key, None)
            self.logs.forget(meta["namespace"], meta["name"])
            return
        if meta.get("deletionTimestamp"):
            self._writers.submit(self._finish_deletion, meta["namespace"], meta["name"], meta["uid"])
            return
        with self._lock:
            sim = self._pods.get(key)
            if sim is not None and sim.uid == meta["uid"]:
                return
            self._pods[key] = self._new_pod(pod)
            self._schedule(key, START_SECONDS)

    def _finish_deletion(self, namespace: str, name: str, uid: str) -> None:
        body = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid))
        try:
            self.core.delete_namespaced_pod(name, namespace, body=body, _preload_content=False)
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("finishing deletion of %s/%s failed: %s", namespace, name, error.reason)

    def _schedule(self, key: str, delay: float) -> None:
        heapq.heappush(self._due, (time.monotonic() + delay, next(self._seq), key))
        self._lock.notify()

    def run_steps(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while not self._due or self._due[0][0] > time.monotonic():
                    timeout = None if not self._due else max(0.0, self._due[0][0] - time.monotonic())
                    self._lock.wait(timeout=min(timeout or 1.0, 1.0))
                    if self._stop.is_set():
                        return
                _, _, key = heapq.heappop(self._due)
                sim = self._pods.get(key)
            if sim is not None and not sim.finished:
                self._writers.submit(self._guarded_step, key, sim)

    def _guarded_step(self, key: str, sim: PodSim) -> None:
        try:
            delay = self._step(sim)
        except ApiException as error:
            if error.status == 404:
                return
            log.warning("step for %s failed (%s); retrying", key, error.reason)
            delay = 1.0
        except Exception:  # the lab must keep running for the other pods
            log.exception("step for %s failed; retrying", key)
            delay = 2.0
        if delay is not None:
            with self._lock:
                if self._pods.get(key) is sim:
                    self._schedule(key, delay)

    def _step(self, sim: PodSim) -> float | None:
        """Advance every container of `sim` by one step; return when to look again (None: never)."""
        exists = self._exists(sim.namespace)
        next_checks: list[float] = []
        if not sim.containers:
            sim.containers = [
                ContainerSim(c["name"], c.get("image", ""), decide(c, restart_policy=sim.restart_policy, exists=exists))
                for c in sim.spec_containers
            ]
        for spec, container in zip(sim.spec_containers, sim.containers, strict=True):
            if container.behaviour.fate is Fate.CONFIG_ERROR:
                container.behaviour = decide(spec, restart_policy=sim.restart_policy, exists=exists)
            next_checks.append(self._advance(sim, container))
        self._write_status(sim)
        pending = [delay for delay in next_checks if delay is not None]
        if not pending:
            sim.finished = True
            return None
        return min(pending)

    def _advance(self, sim: PodSim, c: ContainerSim) -> float | None:
        fate = c.behaviour.fate
        waiting = c.state.get("waiting", {}).get("reason")
        if fate is Fate.PULL_FAILS:
            if waiting == "ErrImagePull":
                c.state = {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{c.image}"'}}
                self._event(sim, c, "Normal", "BackOff", f'Back-off pulling image "{c.image}"')
                delay = c.backoff
                c.backoff = min(c.backoff * 2, BACKOFF_CAP_SECONDS)
                return delay
            self._event(sim, c, "Normal", "Pulling", f'Pulling image "{c.image}"')
            c.state = {"waiting": {"reason": "ErrImagePull", "message": c.behaviour.message}}
            self._event(sim, c, "Warning", "Failed", f'Failed to pull image "{c.image}": {c.behaviour.message}')
            self._event(sim, c, "Warning", "Failed", "Error: ErrImagePull")
            return 1.0
        if fate is Fate.CONFIG_ERROR:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": c.behaviour.message}}
            self._event(sim, c, "Warning", "Failed", f"Error: {c.behaviour.message}")
            return CONFIG_RECHECK_SECONDS
        if "running" in c.state:
            return self._terminate(sim, c)
        if c.state.get("terminated") and sim.restart_policy == "Never":
            return None
        if waiting in (None, "ContainerCreating", "CrashLoopBackOff", "CreateContainerConfigError",
                       "ErrImagePull", "ImagePullBackOff"):
            return self._start(sim, c)
        return None

    def _start(self, sim: PodSim, c: ContainerSim) -> float | None:
        if c.restart_count == 0:
            self._event(sim, c, "Normal", "Pulled", f'Container image "{c.image}" already present on machine')
        self._event(sim, c, "Normal", "Created", f"Created container: {c.name}")
        self._event(sim, c, "Normal", "Started", f"Started container {c.name}")
        c.state = {"running": {"startedAt": _now()}}
        c.started = True
        self.logs.start(sim.namespace, sim.name, c.name, c.behaviour.log_lines)
        if c.behaviour.fate is Fate.RUNS:
            c.ready = True
            return c.behaviour.run_seconds
        c.ready = False
        return c.behaviour.run_seconds or CRASH_AFTER_SECONDS

    def _terminate(self, sim: PodSim, c: ContainerSim) -> float | None:
        started = c.state["running"]["startedAt"]
        b = c.behaviour
        reason = b.reason if b.fate in (Fate.CRASHES, Fate.OOM) else "Completed"
        terminated = {"exitCode": b.exit_code, "reason": reason, "startedAt": started, "finishedAt": _now()}
        c.ready = False
        c.started = False
        if sim.restart_policy == "Never" or (sim.restart_policy == "OnFailure" and b.exit_code == 0):
            c.state = {"terminated": terminated}
            return None
        c.last_state = {"terminated": terminated}
        c.restart_count += 1
        self.logs.rotate(sim.namespace, sim.name, c.name)
        message = f"back-off {int(c.backoff)}s restarting failed container={c.name} pod={sim.name}_{sim.namespace}({sim.uid})"
        c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        self._event(sim, c, "Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod {sim.name}_{sim.namespace}({sim.uid})")
        delay = c.backoff
        c.backoff = min(c.backoff * 2, BACKOFF_CAP_SECONDS)
        return delay

    # ---- status and events ---------------------------------------------------------------
    def _write_status(self, sim: PodSim) -> None:
        statuses = [
            {
                "name": c.name,
                "image": c.image,
                "imageID": f"lab.local/sha256:{abs(hash(c.image)) % 10**12:012d}" if c.started else "",
                "containerID": f"lab://{sim.uid[:8]}-{c.name}-{c.restart_count}" if c.state.get("running") or c.state.get("terminated") else None,
                "ready": c.ready,
                "started": c.started,
                "restartCount": c.restart_count,
                "state": c.state or {"waiting": {"reason": "ContainerCreating"}},
                "lastState": c.last_state,
            }
            for c in sim.containers
        ]
        for status in statuses:
            if status["containerID"] is None:
                del status["containerID"]
        terminated = [c.state.get("terminated") for c in sim.containers]
        if all(terminated):
            phase = "Succeeded" if all(t["exitCode"] == 0 for t in terminated if t) else "Failed"
        elif any(c.started or c.state.get("terminated") for c in sim.containers):
            phase = "Running"
        else:
            phase = "Running" if any(c.restart_count for c in sim.containers) else "Pending"
        all_ready = all(c.ready for c in sim.containers)
        now = _now()

        def condition(kind: str, ok: bool) -> dict[str, Any]:
            item: dict[str, Any] = {"type": kind, "status": "True" if ok else "False", "lastTransitionTime": now}
            if not ok and kind in ("Ready", "ContainersReady"):
                item["reason"] = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
                not_ready = [c.name for c in sim.containers if not c.ready]
                item["message"] = f"containers with unready status: [{' '.join(not_ready)}]"
            return item

        status = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": sim.pod_ip,
            "podIPs": [{"ip": sim.pod_ip}],
            "startTime": sim.start_time,
            "conditions": [
                condition("PodReadyToStartContainers", True),
                condition("Initialized", True),
                condition("Ready", all_ready and phase == "Running"),
                condition("ContainersReady", all_ready and phase == "Running"),
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": sim.start_time},
            ],
            "containerStatuses": statuses,
        }
        self.core.patch_namespaced_pod_status(
            sim.name, sim.namespace, {"status": status},
            _content_type="application/merge-patch+json", _preload_content=False,
        )
        sim.phase = phase

    def _event(self, sim: PodSim, c: ContainerSim, kind: str, reason: str, message: str) -> None:
        key = (sim.uid, c.name, reason, message)
        now = _now()
        previous = self._events.get(key)
        if previous is not None:
            name, count = previous
            self._events[key] = (name, count + 1)
            body = {"count": count + 1, "lastTimestamp": now}
            try:
                self.core.patch_namespaced_event(name, sim.namespace, body, _preload_content=False)
                return
            except ApiException as error:
                if error.status != 404:
                    raise
        name = f"{sim.name}.{time.time_ns():x}"
        self._events[key] = (name, 1)
        event = {
            "metadata": {"name": name, "namespace": sim.namespace},
            "involvedObject": {
                "kind": "Pod", "apiVersion": "v1", "namespace": sim.namespace, "name": sim.name,
                "uid": sim.uid, "fieldPath": f"spec.containers{{{c.name}}}",
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": "kubelet", "host": sim.node},
            "reportingComponent": "kubelet",
            "reportingInstance": sim.node,
        }
        self.core.create_namespaced_event(sim.namespace, event, _preload_content=False)

    # ---- watch ---------------------------------------------------------------------------
    def watch_pods(self) -> None:
        """List and watch pods bound to a node, forever; re-list on expiry or a dropped stream."""
        while not self._stop.is_set():
            try:
                listing = json.loads(
                    self.core.list_pod_for_all_namespaces(
                        field_selector="spec.nodeName!=", _preload_content=False
                    ).data
                )
                for pod in listing["items"]:
                    self.on_pod("ADDED", pod)
                version = listing["metadata"]["resourceVersion"]
                response = self.core.list_pod_for_all_namespaces(
                    field_selector="spec.nodeName!=", watch=True, resource_version=version,
                    allow_watch_bookmarks=True, timeout_seconds=300, _preload_content=False,
                )
                for line in response:
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        break
                    if event["type"] != "BOOKMARK":
                        self.on_pod(event["type"], event["object"])
            except Exception as error:  # API server restarts in tests: keep going
                if not self._stop.is_set():
                    log.info("pod watch ended (%s); re-listing", error)
                    time.sleep(0.5)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._writers.shutdown(wait=False, cancel_futures=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--port", type=int, required=True, help="HTTPS port the API server reaches for pods/log")
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    configuration = client.Configuration()
    config.load_kube_config(config_file=args.kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = 8
    store = LogStore()
    serve_logs(store, "127.0.0.1", args.port, args.cert, args.key)
    kubelet = LabKubelet(client.ApiClient(configuration), store)
    threading.Thread(target=kubelet.run_steps, name="lab-kubelet-steps", daemon=True).start()
    kubelet.watch_pods()


if __name__ == "__main__":
    main()
