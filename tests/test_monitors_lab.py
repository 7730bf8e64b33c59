"""Monitors against the lab's real API server: real watches, real controllers, pods that really fail.

Each test runs its own Watcher and detector, scoped to the test's namespace(s),
breaks workloads the way `lab.programs` documents (a missing image tag, a `crash`
tag, a memory need above the limit, a missing ConfigMap, ...) and checks what
the detector emitted.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from core.config import Settings
from core.models import FaultKind, Incident, IncidentState, ObjectRef
from lab.cluster import LabCluster
from lab.workloads import create_namespace, wait_for
from monitors import watch as watch_module
from monitors.detector import FaultDetector
from monitors.watch import Watcher
from tests.manifests import as_body

pytestmark = pytest.mark.lab

WAIT_SECONDS = 60.0


class Sink:
    """Collects emitted incidents and lets a test wait for one."""

    def __init__(self) -> None:
        self.incidents: list[Incident] = []
        self._changed = threading.Condition()

    def __call__(self, incident: Incident) -> None:
        with self._changed:
            self.incidents.append(incident)
            self._changed.notify_all()

    def wait_for(self, kind: FaultKind, workload: ObjectRef, timeout: float = WAIT_SECONDS) -> Incident:
        def found() -> Incident | None:
            return next((i for i in self.incidents if i.kind is kind and i.workload == workload), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None, timeout)
            incident = found()
        assert incident is not None, f"no {kind.value} incident for {workload} in {timeout} s; got {self.summary()}"
        return incident

    def about(self, workload: ObjectRef) -> list[Incident]:
        with self._changed:
            return [i for i in self.incidents if i.workload == workload]

    def summary(self) -> list[str]:
        return [f"{i.state.value} {i.title}" for i in self.incidents]


class Monitor:
    """A running Watcher + detector with its sink."""

    def __init__(self, api: client.ApiClient, settings: Settings) -> None:
        self.sink = Sink()
        self.detector = FaultDetector(settings, self.sink)
        self.watcher = Watcher(settings, api, self.detector, watch_timeout_seconds=60, max_backoff_seconds=2.0)
        self.watcher.start()
        assert self.watcher.wait_synced(30), "the watcher did not list everything in 30 s"


@pytest.fixture
def monitor_factory(api_client: client.ApiClient) -> Iterator[Callable[..., Monitor]]:
    started: list[Monitor] = []

    def make(**settings: Any) -> Monitor:
        values = {"aggregation_window_seconds": 1.0, "pending_grace_seconds": 1.0, **settings}
        monitor = Monitor(api_client, Settings(**values))
        started.append(monitor)
        return monitor

    yield make
    for monitor in started:
        monitor.watcher.stop()


def deployment(
    name: str,
    image: str = "lab/web:1.0",
    *,
    replicas: int = 1,
    env: list[dict[str, Any]] | None = None,
    memory_limit: str | None = None,
    annotations: dict[str, str] | None = None,
    pod_annotations: dict[str, str] | None = None,
    progress_deadline_seconds: int | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image, "env": env or []}
    if memory_limit:
        container["resources"] = {"limits": {"memory": memory_limit}}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}, "annotations": pod_annotations or {}},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": 0},
        },
    }
    if progress_deadline_seconds is not None:
        spec["progressDeadlineSeconds"] = progress_deadline_seconds
    return {"metadata": {"name": name, "annotations": annotations or {}}, "spec": spec}


def create(api: client.ApiClient, namespace: str, *deployments: dict[str, Any]) -> list[ObjectRef]:
    apps = client.AppsV1Api(api)
    for body in deployments:
        apps.create_namespaced_deployment(namespace, as_body(body))
    return [ObjectRef(kind="Deployment", namespace=namespace, name=d["metadata"]["name"]) for d in deployments]


@pytest.fixture
def second_namespace(api_client: client.ApiClient) -> Iterator[str]:
    name = create_namespace(api_client, f"t-other-{uuid.uuid4().hex[:6]}", {"amos.io/test": "true"})
    yield name
    client.CoreV1Api(api_client).delete_namespace(name, propagation_policy="Background")


def opened(incidents: list[Incident], kind: FaultKind) -> list[Incident]:
    return [i for i in incidents if i.kind is kind and i.state is IncidentState.OPEN]


# ---- each pattern ------------------------------------------------------------------------------
def test_each_pod_pattern_is_detected_with_its_evidence(
    api_client: client.ApiClient, namespace: str, monitor_factory: Callable[..., Monitor]
) -> None:
    monitor = monitor_factory(namespaces=[namespace])
    crash, pull, oom, config = create(
        api_client,
        namespace,
        deployment("crash", "lab/web:v2-crash"),
        deployment("pull", "lab/web:v9.9.9-missing"),
        deployment("oom", env=[{"name": "LAB_MEMORY_MI", "value": "256"}], memory_limit="64Mi"),
        deployment("config", env=[{"name": "DB", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "db"}}}]),
    )
    sink = monitor.sink

    incident = sink.wait_for(FaultKind.CRASH_LOOP, crash)
    evidence = incident.evidence[0]
    assert (evidence.reason, evidence.container, evidence.exit_code) == ("CrashLoopBackOff", "app", 1)
    assert evidence.restart_count is not None and evidence.restart_count >= 1 and evidence.since is not None
    assert [a.kind for a in incident.affected] == ["Pod"] and incident.affected[0].name.startswith("crash-")
    assert incident.detected_latency_seconds is not None and incident.detected_latency_seconds < 30

    evidence = sink.wait_for(FaultKind.IMAGE_PULL, pull).evidence[0]
    assert evidence.reason in ("ErrImagePull", "ImagePullBackOff") and "v9.9.9-missing" in evidence.message

    evidence = sink.wait_for(FaultKind.OOM_KILLED, oom).evidence[0]
    assert (evidence.reason, evidence.exit_code) == ("OOMKilled", 137)

    evidence = sink.wait_for(FaultKind.CONTAINER_CONFIG, config).evidence[0]
    assert evidence.reason == "CreateContainerConfigError" and 'configmap "absent" not found' in evidence.message

    time.sleep(3)  # OOM outranks the crash loop it causes: no second incident for `oom`
    assert {i.kind for i in sink.about(oom)} == {FaultKind.OOM_KILLED}


def test_unschedulable_pod_and_failed_job(
    api_client: client.ApiClient, namespace: str, monitor_factory: Callable[..., Monitor]
) -> None:
    monitor = monitor_factory(namespaces=[namespace], pending_grace_seconds=2.0)
    core, batch = client.CoreV1Api(api_client), client.BatchV1Api(api_client)
    core.create_namespaced_pod(
        namespace,
        as_body(
            {
                "metadata": {"name": "stranded"},
                "spec": {
                    "nodeSelector": {"disk": "nvme-that-no-node-has"},
                    "containers": [{"name": "app", "image": "lab/web:1.0"}],
                },
            }
        ),
    )
    batch.create_namespaced_job(
        namespace,
        as_body(
            {
                "metadata": {"name": "report"},
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "report",
                                    "image": "lab/report:1.0",
                                    "env": [{"name": "LAB_EXIT_CODE", "value": "3"}],
                                }
                            ],
                        }
                    },
                },
            }
        ),
    )

    stranded = ObjectRef(kind="Pod", namespace=namespace, name="stranded")
    incident = monitor.sink.wait_for(FaultKind.UNSCHEDULABLE, stranded)
    assert incident.evidence[0].reason == "Unschedulable" and "node" in incident.evidence[0].message
    assert incident.detected_latency_seconds is not None and incident.detected_latency_seconds >= 2.0

    incident = monitor.sink.wait_for(FaultKind.JOB_FAILED, ObjectRef(kind="Job", namespace=namespace, name="report"))
    assert incident.evidence[0].reason == "BackoffLimitExceeded"


def test_stuck_rollout_and_unavailable_replicas(
    api_client: client.ApiClient, namespace: str, monitor_factory: Callable[..., Monitor]
) -> None:
    monitor = monitor_factory(namespaces=[namespace], unavailable_grace_seconds=3.0)
    (stuck,) = create(api_client, namespace, deployment("stuck", "lab/web:v2-crash", progress_deadline_seconds=2))

    incident = monitor.sink.wait_for(FaultKind.REPLICAS_UNAVAILABLE, stuck)
    assert incident.evidence[0].reason == "MinimumReplicasUnavailable"
    incident = monitor.sink.wait_for(FaultKind.ROLLOUT_STUCK, stuck)
    assert incident.evidence[0].reason == "ProgressDeadlineExceeded"


def test_fixing_the_spec_resolves_the_incident(
    api_client: client.ApiClient, namespace: str, monitor_factory: Callable[..., Monitor]
) -> None:
    monitor = monitor_factory(namespaces=[namespace])
    (web,) = create(api_client, namespace, deployment("web", "lab/web:v9.9.9-missing", replicas=3))
    opened_incident = monitor.sink.wait_for(FaultKind.IMAGE_PULL, web)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "lab/web:1.0"}]}}}}
    client.AppsV1Api(api_client).patch_namespaced_deployment("web", namespace, patch)

    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and not any(i.state is IncidentState.RESOLVED for i in monitor.sink.about(web)):
        time.sleep(0.2)
    resolved = [i for i in monitor.sink.about(web) if i.state is IncidentState.RESOLVED]
    assert [i.id for i in resolved] == [opened_incident.id]


# ---- grouping ----------------------------------------------------------------------------------
def test_thirty_crashing_replicas_are_one_incident(
    api_client: client.ApiClient, namespace: str, monitor_factory: Callable[..., Monitor]
) -> None:
    monitor = monitor_factory(namespaces=[namespace])
    (web,) = create(api_client, namespace, deployment("web", "lab/web:2.0-crash", replicas=30))
    monitor.sink.wait_for(FaultKind.CRASH_LOOP, web)

    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        current = [i for i in monitor.detector.open_incidents() if i.workload == web]
        if current and len(current[0].affected) == 30:
            break
        time.sleep(0.5)
    (incident,) = [i for i in monitor.detector.open_incidents() if i.workload == web]
    assert len({a.name for a in incident.affected}) == 30
    time.sleep(3)
    assert len(opened(monitor.sink.about(web), FaultKind.CRASH_LOOP)) == 1


def test_two_broken_deployments_are_two_incidents(
    api_client: client.ApiClient, namespace: str, monitor_factory: Callable[..., Monitor]
) -> None:
    monitor = monitor_factory(namespaces=[namespace])
    web, api = create(
        api_client,
        namespace,
        deployment("web", "lab/web:crash", replicas=3),
        deployment("api", "lab/api:crash", replicas=3),
    )
    first = monitor.sink.wait_for(FaultKind.CRASH_LOOP, web)
    second = monitor.sink.wait_for(FaultKind.CRASH_LOOP, api)
    assert first.id != second.id
    time.sleep(3)
    assert len(opened(monitor.sink.incidents, FaultKind.CRASH_LOOP)) == 2


# ---- scope -------------------------------------------------------------------------------------
def test_excluded_namespace_gives_nothing(
    api_client: client.ApiClient, namespace: str, second_namespace: str, monitor_factory: Callable[..., Monitor]
) -> None:
    monitor = monitor_factory(excluded_namespaces=["kube-system", "kube-public", "kube-node-lease", namespace])
    (hidden,) = create(api_client, namespace, deployment("web", "lab/web:crash"))
    (control,) = create(api_client, second_namespace, deployment("web", "lab/web:crash"))
    monitor.sink.wait_for(FaultKind.CRASH_LOOP, control)
    time.sleep(3)
    assert monitor.sink.about(hidden) == []
    assert monitor.detector.subjects("Pod", namespace) == set()


def test_opted_out_objects_give_nothing(
    api_client: client.ApiClient, namespace: str, monitor_factory: Callable[..., Monitor]
) -> None:
    monitor = monitor_factory(namespaces=[namespace])
    ignore = {"amos.io/ignore": "true"}
    out_workload, out_pods, control = create(
        api_client,
        namespace,
        deployment("quiet", "lab/web:crash", annotations=ignore),
        deployment("muted", "lab/web:crash", pod_annotations=ignore),
        deployment("loud", "lab/web:crash"),
    )
    monitor.sink.wait_for(FaultKind.CRASH_LOOP, control)
    time.sleep(3)
    assert monitor.sink.about(out_workload) == [] and monitor.sink.about(out_pods) == []


# ---- resilience --------------------------------------------------------------------------------
def test_a_fault_is_reported_once_across_an_api_server_restart(
    lab: LabCluster, api_client: client.ApiClient, namespace: str, monitor_factory: Callable[..., Monitor]
) -> None:
    monitor = monitor_factory(namespaces=[namespace])
    (web,) = create(api_client, namespace, deployment("web", "lab/web:crash", replicas=2))
    before = monitor.sink.wait_for(FaultKind.CRASH_LOOP, web)

    lab.restart_apiserver()
    (late,) = create(api_client, namespace, deployment("late", "lab/web:v0-notfound"))  # appears after the restart
    monitor.sink.wait_for(FaultKind.IMAGE_PULL, late)
    deadline = time.monotonic() + WAIT_SECONDS
    while monitor.watcher.reconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert monitor.watcher.reconnects >= 1
    time.sleep(3)
    assert [(i.id, i.state) for i in monitor.sink.about(web)] == [(before.id, IncidentState.OPEN)]
    assert len(monitor.sink.about(late)) == 1


def test_a_relist_reads_every_page_and_forgets_what_went_away_meanwhile(
    api_client: client.ApiClient, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pages of two objects: every page counts (opt-outs and pods on later pages too), and a Deployment deleted
    while the watcher was away is forgotten by the relist, the incidents of the others untouched."""
    monkeypatch.setattr(watch_module, "LIST_PAGE_SIZE", 2)
    settings = Settings(namespaces=[namespace], aggregation_window_seconds=1.0, pending_grace_seconds=1.0)
    sink = Sink()
    watcher = Watcher(settings, api_client, FaultDetector(settings, sink), watch_timeout_seconds=2)
    ignore = {"amos.io/ignore": "true"}
    gone, kept, *quiet = create(
        api_client,
        namespace,
        deployment("gone", "lab/web:crash", replicas=2),
        deployment("kept", "lab/web:crash", replicas=2),
        deployment("quiet-a", "lab/web:crash", annotations=ignore),
        deployment("quiet-b", "lab/web:crash", annotations=ignore),
    )
    watcher.start()
    try:
        assert watcher.wait_synced(30)
        sink.wait_for(FaultKind.CRASH_LOOP, gone)
        before = sink.wait_for(FaultKind.CRASH_LOOP, kept)
        watcher.stop()
        client.AppsV1Api(api_client).delete_namespaced_deployment("gone", namespace)
        core = client.CoreV1Api(api_client)
        wait_for(
            lambda: not core.list_namespaced_pod(namespace, label_selector="app=gone").items,
            timeout=WAIT_SECONDS,
            what="the pods of the deleted Deployment to go",
        )
        watcher.start()
        assert watcher.wait_synced(30)
        resolved = wait_for(
            lambda: [i for i in sink.about(gone) if i.state is IncidentState.RESOLVED],
            timeout=WAIT_SECONDS,
            what="the relist to resolve the deleted Deployment's incident",
        )
        time.sleep(3)
    finally:
        watcher.stop()
    assert [i.id for i in resolved] == [sink.about(gone)[0].id]
    assert [(i.id, i.state) for i in sink.about(kept)] == [(before.id, IncidentState.OPEN)]
    assert [sink.about(ref) for ref in quiet] == [[], []]
