"""The lab kubelet: plays the container runtime for every pod bound to a KWOK node.

KWOK keeps the fake nodes alive (registration, heartbeats, leases); this process
does what a kubelet does for pods: decide each container's fate from its spec
(`lab.programs`), write pod status the way a kubelet writes it (waiting reasons,
restart counts, lastState, exit codes, conditions), emit kubelet Events, keep
container logs (current and previous) and serve them to the API server's
`pods/log` proxy, and finish graceful deletions. Init containers run one after
the other before the app containers (a sidecar, `restartPolicy: Always`, lets the
next one start once it runs); probes run on the lab clock and a liveness or
startup failure kills the container (exit 137) as the kubelet does. Crash-looping
containers restart with a back-off that doubles, like the real one.

The lab clock is `LAB_CLOCK_SPEEDUP` (5x) faster than a kubelet's: back-off starts at
2 s, and a probe's initialDelaySeconds and periodSeconds are divided by 5 (period at
least 0.2 s); failureThreshold counts as written.

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
from urllib.parse import quote

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from lab.logserver import LogStore, serve_logs
from lab.programs import Behaviour, Fate, ProbeAnswer, ProbeKind, Role, answer_probe, decide

log = logging.getLogger("lab.kubelet")

LAB_CLOCK_SPEEDUP = 5.0  # lab seconds are this much shorter than a kubelet's: back-off, probe delays and periods
BACKOFF_BASE_SECONDS = 10.0 / LAB_CLOCK_SPEEDUP  # the real kubelet starts at 10 s
BACKOFF_CAP_SECONDS = 20.0  # the real cap is 300 s
START_SECONDS = 0.4  # pull + create + start of a container
CRASH_AFTER_SECONDS = 0.6  # how long a crashing program runs before it dies
CONFIG_RECHECK_SECONDS = 2.0
MIN_PROBE_PERIOD_SECONDS = 0.2
WRITERS = 32  # concurrent writes: each waits tens of ms for the API server, so few writers cap the pod rate
LIVENESS_KILL_EXIT_CODE = 137  # the program ignores SIGTERM and is SIGKILLed after the grace period
_PROBE_FIELDS = (
    (ProbeKind.STARTUP, "startupProbe"),
    (ProbeKind.LIVENESS, "livenessProbe"),
    (ProbeKind.READINESS, "readinessProbe"),
)
_STARTABLE_WAITING = (
    None,
    "ContainerCreating",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "ErrImagePull",
    "ImagePullBackOff",
)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ProbeSim:
    """One probe of a running container on the lab clock; its answer is fixed by the spec, so one success ends it."""

    kind: ProbeKind
    answer: ProbeAnswer
    initial_delay: float
    period: float
    failure_threshold: int
    next_at: float | None = None  # None: not probing (waiting for the startup probe, or done)
    failures: int = 0

    @classmethod
    def of(cls, kind: ProbeKind, probe: dict[str, Any], container: dict[str, Any], pod_ip: str) -> ProbeSim:
        return cls(
            kind=kind,
            answer=answer_probe(probe, container, pod_ip),
            initial_delay=float(probe.get("initialDelaySeconds") or 0) / LAB_CLOCK_SPEEDUP,
            period=max(float(probe.get("periodSeconds") or 10) / LAB_CLOCK_SPEEDUP, MIN_PROBE_PERIOD_SECONDS),
            failure_threshold=int(probe.get("failureThreshold") or 3),
        )


@dataclass
class ContainerSim:
    spec: dict[str, Any]
    role: Role
    in_init_list: bool  # listed in spec.initContainers (a regular init container or a sidecar)
    restart_policy: str  # this container's own: a sidecar's is Always, an init container's OnFailure or Never
    behaviour: Behaviour
    restart_count: int = 0
    state: dict[str, Any] = field(default_factory=dict)
    last_state: dict[str, Any] = field(default_factory=dict)
    ready: bool = False
    started: bool = False
    backoff: float = BACKOFF_BASE_SECONDS
    activated: bool = False  # its turn has come (init containers run one after the other, then the app)
    due: float | None = None  # monotonic time of its next step; None: nothing will happen by itself
    run_until: float | None = None  # a running program ends (exits or crashes) at this time
    probes: list[ProbeSim] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def image(self) -> str:
        return str(self.spec.get("image", ""))

    @property
    def sidecar(self) -> bool:
        return self.in_init_list and self.role is Role.SERVICE

    @property
    def field_path(self) -> str:
        return f"spec.{'initContainers' if self.in_init_list else 'containers'}{{{self.name}}}"

    @property
    def exit_code(self) -> int | None:
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])

    @property
    def lets_next_start(self) -> bool:
        """An init container lets the next one start once it completed; a sidecar once it started."""
        return self.exit_code == 0 or (self.sidecar and self.started)


@dataclass
class PodSim:
    namespace: str
    name: str
    uid: str
    node: str
    restart_policy: str
    spec: dict[str, Any]
    pod_ip: str
    start_time: str
    init_containers: list[ContainerSim] = field(default_factory=list)
    containers: list[ContainerSim] = field(default_factory=list)
    initialized: bool = False  # latched, as the kubelet's Initialized condition
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)  # type -> (status, lastTransitionTime)
    written: dict[str, Any] | None = None  # the status last written, to skip writes that change nothing

    @property
    def all_containers(self) -> list[ContainerSim]:
        return self.init_containers + self.containers


class Writes:
    """The kubelet's writes as plain HTTPS requests with pre-encoded JSON.

    The generated client spends about 5.7 ms of CPU per write where this spends 1.0 ms
    (measured on the lab); with four writes per started pod, that was the lab's pod-rate ceiling.
    """

    def __init__(self, configuration: client.Configuration, connections: int) -> None:
        self._base = configuration.host.rstrip("/")
        self._headers = {"Accept": "application/json"}
        token = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            self._headers["Authorization"] = token
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=connections,
            block=True,
            cert_file=configuration.cert_file,
            key_file=configuration.key_file,
            ca_certs=configuration.ssl_ca_cert,
            cert_reqs="CERT_REQUIRED" if configuration.verify_ssl else "CERT_NONE",
        )

    def send(self, method: str, path: str, body: dict[str, Any], content_type: str = "application/json") -> None:
        """One request; an answer of 400 or more raises ApiException with its status, as the generated client does."""
        response = self._pool.request(
            method,
            self._base + path,
            body=json.dumps(body).encode(),
            headers={**self._headers, "Content-Type": content_type},
            timeout=30.0,
        )
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason or response.data[:200].decode())

    @staticmethod
    def pod_path(namespace: str, name: str) -> str:
        return f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}"

    @staticmethod
    def events_path(namespace: str, name: str = "") -> str:
        return f"/api/v1/namespaces/{quote(namespace)}/events" + (f"/{quote(name)}" if name else "")


class LabKubelet:
    """Level-driven: each container has a next due time; a pod's step runs its due containers and writes status."""

    def __init__(self, api: client.ApiClient, log_store: LogStore, *, quiet_starts: bool = False) -> None:
        self.core = client.CoreV1Api(api)
        self.quiet_starts = quiet_starts  # scale runs: no Normal Events for a healthy container's first start
        self.writes = Writes(api.configuration, WRITERS)
        self.logs = log_store
        self._pods: dict[str, PodSim] = {}  # pods with something still to happen
        self._settled: dict[str, str] = {}  # pod key -> uid of a pod where nothing will happen by itself
        self._due: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._lock = threading.Condition()
        self._ip_counter = itertools.count(2)
        self._writers = ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="lab-kubelet-write")
        self._events: dict[str, dict[tuple[str, str, str], tuple[str, int]]] = {}  # pod uid -> event key -> name
        self._stop = threading.Event()

    # ---- pod lifecycle -------------------------------------------------------------------
    def _exists(self, namespace: str) -> Any:
        def exists(kind: str, name: str, key: str | None) -> bool:
            try:
                if kind == "configmap":
                    config_map = self.core.read_namespaced_config_map(name, namespace)
                    data = {**(config_map.data or {}), **(config_map.binary_data or {})}
                else:
                    secret = self.core.read_namespaced_secret(name, namespace)
                    data = {**(secret.data or {}), **(secret.string_data or {})}
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
            spec=spec,
            pod_ip=f"10.244.{index // 250 % 250}.{index % 250 + 1}",
            start_time=_now(),
        )

    def on_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        key = f"{meta['namespace']}/{meta['name']}"
        if event_type == "DELETED":
            with self._lock:
                self._pods.pop(key, None)
                self._settled.pop(key, None)
            self._events.pop(meta["uid"], None)
            self.logs.forget(meta["namespace"], meta["name"])
            return
        if meta.get("deletionTimestamp"):
            self._writers.submit(self._finish_deletion, meta["namespace"], meta["name"], meta["uid"])
            return
        with self._lock:
            sim = self._pods.get(key)
            if (sim is not None and sim.uid == meta["uid"]) or self._settled.get(key) == meta["uid"]:
                return
            self._settled.pop(key, None)
            self._pods[key] = self._new_pod(pod)
            self._schedule(key, START_SECONDS)

    def _finish_deletion(self, namespace: str, name: str, uid: str) -> None:
        body = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        try:
            self.writes.send("DELETE", self.writes.pod_path(namespace, name), body)
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
            if sim is not None:
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
        with self._lock:
            if self._pods.get(key) is not sim:
                return
            if delay is not None:
                self._schedule(key, delay)
                return
            del self._pods[key]  # settled: keep only its uid, so 50,000 running pods cost little memory
            self._settled[key] = sim.uid
        self._events.pop(sim.uid, None)

    def _decide(self, sim: PodSim, spec: dict[str, Any], role: Role) -> Behaviour:
        return decide(spec, role=role, exists=self._exists(sim.namespace))

    def _create_containers(self, sim: PodSim) -> None:
        """Decide every container's fate; an init container restarts unless the pod never restarts anything."""
        init_policy = "Never" if sim.restart_policy == "Never" else "OnFailure"
        for spec in sim.spec.get("initContainers") or []:
            sidecar = spec.get("restartPolicy") == "Always"
            role = Role.SERVICE if sidecar else Role.INIT
            sim.init_containers.append(
                ContainerSim(spec, role, True, "Always" if sidecar else init_policy, self._decide(sim, spec, role))
            )
        role = Role.SERVICE if sim.restart_policy == "Always" else Role.BATCH
        sim.containers = [
            ContainerSim(spec, role, False, sim.restart_policy, self._decide(sim, spec, role))
            for spec in sim.spec.get("containers") or []
        ]

    def _step(self, sim: PodSim) -> float | None:
        """Advance the containers of `sim` that are due; return in how many seconds to look again (None: never)."""
        now = time.monotonic()
        if not sim.all_containers:
            self._create_containers(sim)
            self._activate(sim, now)  # the pod already waited START_SECONDS since it was bound
        for c in sim.all_containers:
            if c.due is None or c.due > now:
                continue
            if c.behaviour.fate is Fate.CONFIG_ERROR:
                c.behaviour = self._decide(sim, c.spec, c.role)
            c.due = self._advance(sim, c, now)
        self._stop_sidecars_after_the_app(sim)
        self._activate(sim, now + START_SECONDS)
        self._write_status(sim)
        pending = [c.due for c in sim.all_containers if c.due is not None]
        if not pending:
            return None
        return max(0.0, min(pending) - time.monotonic())

    @staticmethod
    def _activate(sim: PodSim, at: float) -> None:
        """Start containers in order: init containers one at a time, then every app container together."""
        for c in sim.init_containers:
            if not c.activated:
                c.activated, c.due = True, at
                return
            if not c.lets_next_start:
                return
        sim.initialized = True
        for c in sim.containers:
            if not c.activated:
                c.activated, c.due = True, at

    def _stop_sidecars_after_the_app(self, sim: PodSim) -> None:
        """Once every app container has ended for good, the kubelet stops the sidecars (pod Succeeded/Failed)."""
        if not sim.containers or any(c.exit_code is None or c.due is not None for c in sim.containers):
            return
        for c in sim.init_containers:
            if c.sidecar and "terminated" not in c.state:
                self._event(sim, c, "Normal", "Killing", f"Stopping container {c.name}")
                started = (c.state.get("running") or {}).get("startedAt", _now())
                c.state = {
                    "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": _now()}
                }
                c.ready = c.started = False
                c.due, c.probes = None, []

    def _advance(self, sim: PodSim, c: ContainerSim, now: float) -> float | None:
        """One step of container `c`; returns the monotonic time of its next step (None: nothing more by itself)."""
        fate = c.behaviour.fate
        waiting = c.state.get("waiting", {}).get("reason")
        if fate is Fate.PULL_FAILS:
            if waiting == "ErrImagePull":
                c.state = {"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{c.image}"'}}
                self._event(sim, c, "Normal", "BackOff", f'Back-off pulling image "{c.image}"')
                delay = c.backoff
                c.backoff = min(c.backoff * 2, BACKOFF_CAP_SECONDS)
                return now + delay
            self._event(sim, c, "Normal", "Pulling", f'Pulling image "{c.image}"')
            c.state = {"waiting": {"reason": "ErrImagePull", "message": c.behaviour.message}}
            self._event(sim, c, "Warning", "Failed", f'Failed to pull image "{c.image}": {c.behaviour.message}')
            self._event(sim, c, "Warning", "Failed", "Error: ErrImagePull")
            return now + 1.0
        if fate is Fate.CONFIG_ERROR:
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": c.behaviour.message}}
            self._event(sim, c, "Warning", "Failed", f"Error: {c.behaviour.message}")
            return now + CONFIG_RECHECK_SECONDS
        if "running" in c.state:
            return self._run(sim, c, now)
        if c.state.get("terminated") and c.restart_policy == "Never":
            return None
        if waiting in _STARTABLE_WAITING:
            return self._start(sim, c, now)
        return None

    def _start(self, sim: PodSim, c: ContainerSim, now: float) -> float | None:
        if not (self.quiet_starts and c.restart_count == 0 and c.behaviour.fate is Fate.RUNS):
            if c.restart_count == 0:
                self._event(sim, c, "Normal", "Pulled", f'Container image "{c.image}" already present on machine')
            self._event(sim, c, "Normal", "Created", f"Created container: {c.name}")
            self._event(sim, c, "Normal", "Started", f"Started container {c.name}")
        c.state = {"running": {"startedAt": _now()}}
        self.logs.start(sim.namespace, sim.name, c.name, c.behaviour.log_lines)
        if c.behaviour.fate is not Fate.RUNS:
            c.started, c.ready = True, False
            c.run_until = now + (c.behaviour.run_seconds or CRASH_AFTER_SECONDS)
            return c.run_until
        c.run_until = None if c.behaviour.run_seconds is None else now + c.behaviour.run_seconds
        c.probes = [
            ProbeSim.of(kind, c.spec[key], c.spec, sim.pod_ip) for kind, key in _PROBE_FIELDS if c.spec.get(key)
        ]
        gated = any(p.kind is ProbeKind.STARTUP for p in c.probes)
        for probe in c.probes:
            if probe.kind is ProbeKind.STARTUP or not gated:
                probe.next_at = now + probe.initial_delay
        c.started = not gated
        c.ready = c.started and c.role is not Role.INIT and not any(p.kind is ProbeKind.READINESS for p in c.probes)
        return self._next_in_run(c)

    @staticmethod
    def _next_in_run(c: ContainerSim) -> float | None:
        times = [p.next_at for p in c.probes if p.next_at is not None]
        if c.run_until is not None:
            times.append(c.run_until)
        return min(times) if times else None

    def _run(self, sim: PodSim, c: ContainerSim, now: float) -> float | None:
        """A running container: its program ends when its time comes; its probes run when theirs do."""
        if c.run_until is not None and c.run_until <= now:
            b = c.behaviour
            reason = b.reason if b.fate in (Fate.CRASHES, Fate.OOM) else "Completed"
            return self._terminate(sim, c, now, b.exit_code, reason)
        for probe in c.probes:
            if probe.next_at is not None and probe.next_at <= now and self._probe(sim, c, probe, now):
                return self._terminate(sim, c, now, LIVENESS_KILL_EXIT_CODE, "Error")
        return self._next_in_run(c)

    def _probe(self, sim: PodSim, c: ContainerSim, probe: ProbeSim, now: float) -> bool:
        """Run one probe; True when the kubelet kills the container for it (liveness/startup failureThreshold)."""
        if probe.answer.ok:
            probe.next_at, probe.failures = None, 0
            if probe.kind is ProbeKind.STARTUP:
                c.started = True
                for other in c.probes:
                    if other.kind is not ProbeKind.STARTUP:
                        other.next_at = now + other.initial_delay
                c.ready = not any(p.kind is ProbeKind.READINESS for p in c.probes)
            elif probe.kind is ProbeKind.READINESS:
                c.ready = True
            return False
        verb = "errored" if probe.answer.errored else "failed"
        self._event(sim, c, "Warning", "Unhealthy", f"{probe.kind} probe {verb}: {probe.answer.output}")
        probe.failures += 1
        probe.next_at = now + probe.period
        if probe.kind is ProbeKind.READINESS or probe.failures < probe.failure_threshold:
            return False
        self._event(
            sim, c, "Normal", "Killing", f"Container {c.name} failed {probe.kind.lower()} probe, will be restarted"
        )
        return True

    def _terminate(self, sim: PodSim, c: ContainerSim, now: float, exit_code: int, reason: str) -> float | None:
        started = c.state["running"]["startedAt"]
        terminated = {"exitCode": exit_code, "reason": reason, "startedAt": started, "finishedAt": _now()}
        c.ready = c.started = False
        c.run_until, c.probes = None, []
        if c.restart_policy == "Never" or (c.restart_policy == "OnFailure" and exit_code == 0):
            c.state = {"terminated": terminated}
            c.ready = c.role is Role.INIT and exit_code == 0  # a completed init container reports ready
            return None
        c.last_state = {"terminated": terminated}
        c.restart_count += 1
        self.logs.rotate(sim.namespace, sim.name, c.name)
        pod = f"{sim.name}_{sim.namespace}({sim.uid})"
        message = f"back-off {int(c.backoff)}s restarting failed container={c.name} pod={pod}"
        c.state = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        self._event(sim, c, "Warning", "BackOff", f"Back-off restarting failed container {c.name} in pod {pod}")
        delay = c.backoff
        c.backoff = min(c.backoff * 2, BACKOFF_CAP_SECONDS)
        return now + delay

    # ---- status and events ---------------------------------------------------------------
    def _phase(self, sim: PodSim) -> str:
        if any(c.restart_policy == "Never" and c.exit_code not in (None, 0) for c in sim.init_containers):
            return "Failed"
        if not sim.initialized:
            return "Pending"
        terminated = [c.exit_code for c in sim.containers]
        if all(code is not None for code in terminated):
            return "Succeeded" if all(code == 0 for code in terminated) else "Failed"
        if any(c.started or c.exit_code is not None or c.restart_count for c in sim.containers):
            return "Running"
        return "Pending"

    @staticmethod
    def _container_status(sim: PodSim, c: ContainerSim) -> dict[str, Any]:
        status: dict[str, Any] = {
            "name": c.name,
            "image": c.image,
            "imageID": f"lab.local/sha256:{abs(hash(c.image)) % 10**12:012d}"
            if c.started or c.exit_code is not None
            else "",
            "ready": c.ready,
            "started": c.started,
            "restartCount": c.restart_count,
            "state": c.state
            or {"waiting": {"reason": "PodInitializing" if sim.init_containers else "ContainerCreating"}},
            "lastState": c.last_state,
        }
        if "running" in c.state or "terminated" in c.state:
            status["containerID"] = f"lab://{sim.uid[:8]}-{c.name}-{c.restart_count}"
        return status

    def _condition(self, sim: PodSim, kind: str, ok: bool, reason: str = "", message: str = "") -> dict[str, Any]:
        """A pod condition whose lastTransitionTime moves only when its status does."""
        status = "True" if ok else "False"
        previous = sim.conditions.get(kind)
        since = previous[1] if previous is not None and previous[0] == status else _now()
        sim.conditions[kind] = (status, since)
        item: dict[str, Any] = {"type": kind, "status": status, "lastTransitionTime": since}
        if not ok and reason:
            item["reason"], item["message"] = reason, message
        return item

    def _write_status(self, sim: PodSim) -> None:
        phase = self._phase(sim)
        serving = [c for c in sim.init_containers if c.sidecar] + sim.containers
        not_ready = [c.name for c in serving if not c.ready]
        ready = not not_ready and phase == "Running"
        not_ready_reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        not_ready_message = f"containers with unready status: [{' '.join(not_ready)}]"
        incomplete = [c.name for c in sim.init_containers if not c.lets_next_start]
        conditions = [
            self._condition(sim, "PodReadyToStartContainers", True),
            self._condition(
                sim,
                "Initialized",
                sim.initialized,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]",
            ),
            self._condition(sim, "Ready", ready, not_ready_reason, not_ready_message),
            self._condition(sim, "ContainersReady", ready, not_ready_reason, not_ready_message),
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": sim.start_time},
        ]
        status: dict[str, Any] = {
            "phase": phase,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "podIP": sim.pod_ip,
            "podIPs": [{"ip": sim.pod_ip}],
            "startTime": sim.start_time,
            "conditions": conditions,
            "containerStatuses": [self._container_status(sim, c) for c in sim.containers],
        }
        if sim.init_containers:
            status["initContainerStatuses"] = [self._container_status(sim, c) for c in sim.init_containers]
        if status == sim.written:
            return
        self.writes.send(
            "PATCH",
            self.writes.pod_path(sim.namespace, sim.name) + "/status",
            {"status": status},
            "application/merge-patch+json",
        )
        sim.written = status

    def _event(self, sim: PodSim, c: ContainerSim, kind: str, reason: str, message: str) -> None:
        key = (c.name, reason, message)
        now = _now()
        seen = self._events.setdefault(sim.uid, {})
        previous = seen.get(key)
        if previous is not None:
            name, count = previous
            seen[key] = (name, count + 1)
            body = {"count": count + 1, "lastTimestamp": now}
            try:
                self.writes.send(
                    "PATCH", self.writes.events_path(sim.namespace, name), body, "application/merge-patch+json"
                )
                return
            except ApiException as error:
                if error.status != 404:
                    raise
        name = f"{sim.name}.{time.time_ns():x}"
        seen[key] = (name, 1)
        event = {
            "metadata": {"name": name, "namespace": sim.namespace},
            "involvedObject": {
                "kind": "Pod",
                "apiVersion": "v1",
                "namespace": sim.namespace,
                "name": sim.name,
                "uid": sim.uid,
                "fieldPath": c.field_path,
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
        self.writes.send("POST", self.writes.events_path(sim.namespace), event)

    # ---- watch ---------------------------------------------------------------------------
    def watch_pods(self) -> None:
        """List and watch pods bound to a node, forever; re-list on expiry or a dropped stream."""
        while not self._stop.is_set():
            try:
                raw: Any = self.core.list_pod_for_all_namespaces(
                    field_selector="spec.nodeName!=", _preload_content=False
                )
                listing = json.loads(raw.data)
                for pod in listing["items"]:
                    self.on_pod("ADDED", pod)
                version = listing["metadata"]["resourceVersion"]
                response: Any = self.core.list_pod_for_all_namespaces(
                    field_selector="spec.nodeName!=",
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=300,
                    _preload_content=False,
                )
                for line in response:
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        break
                    if event["type"] != "BOOKMARK":
                        self.on_pod(event["type"], event["object"])
            except Exception as error:  # noqa: BLE001 (API server restarts in tests: keep going)
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
    parser.add_argument(
        "--quiet-starts",
        action="store_true",
        help="no Pulled/Created/Started Events when a healthy container first starts (3 of the 7 "
        "API writes a pod costs; for scale runs, where nobody reads them)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    configuration = client.Configuration()
    config.load_kube_config(config_file=args.kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = 4  # reads and the watch; writes have their own pool
    store = LogStore()
    serve_logs(store, "127.0.0.1", args.port, args.cert, args.key)
    kubelet = LabKubelet(client.ApiClient(configuration), store, quiet_starts=args.quiet_starts)
    threading.Thread(target=kubelet.run_steps, name="lab-kubelet-steps", daemon=True).start()
    kubelet.watch_pods()


if __name__ == "__main__":
    main()
