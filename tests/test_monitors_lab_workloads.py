"""Monitors on the lab's real API server for every workload kind: StatefulSets, DaemonSets, CronJobs, quota
FailedCreate, the known-good signal, init containers and probes (the lab kubelet runs them as `lab.programs`
documents: a probe on a port the container does not declare fails).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from core.config import Settings
from core.models import FaultKind, IncidentState, ObjectRef
from monitors.detector import FaultDetector
from monitors.health import HealthyRevision
from monitors.templates import hash_pod_template
from monitors.watch import Watcher
from tests.manifests import as_body
from tests.service_accounts import token_client
from tests.test_monitors_lab import WAIT_SECONDS, Sink, opened

pytestmark = pytest.mark.lab


class Signals:
    """Collects HealthyRevision signals and lets a test wait for one."""

    def __init__(self) -> None:
        self.heard: list[HealthyRevision] = []
        self._changed = threading.Condition()

    def __call__(self, signal: HealthyRevision) -> None:
        with self._changed:
            self.heard.append(signal)
            self._changed.notify_all()

    def wait_for(self, workload: ObjectRef, timeout: float = WAIT_SECONDS) -> HealthyRevision:
        with self._changed:
            self._changed.wait_for(lambda: any(s.workload == workload for s in self.heard), timeout)
            found = [s for s in self.heard if s.workload == workload]
        assert found, f"no healthy revision of {workload} in {timeout} s; heard {self.heard}"
        return found[0]

    def about(self, workload: ObjectRef) -> list[HealthyRevision]:
        with self._changed:
            return [s for s in self.heard if s.workload == workload]


class Monitor:
    def __init__(self, api: client.ApiClient, settings: Settings) -> None:
        self.sink, self.signals = Sink(), Signals()
        self.detector = FaultDetector(settings, self.sink)
        self.watcher = Watcher(
            settings,
            api,
            self.detector,
            watch_timeout_seconds=60,
            max_backoff_seconds=2.0,
            on_healthy=self.signals,
            stable_window_seconds=2.0,
        )
        self.watcher.start()
        assert self.watcher.wait_synced(30), "the watcher did not list everything in 30 s"


@pytest.fixture
def monitor(api_client: client.ApiClient, namespace: str) -> Iterator[Monitor]:
    settings = Settings(
        namespaces=[namespace], aggregation_window_seconds=1.0, pending_grace_seconds=1.0, unavailable_grace_seconds=3.0
    )
    started = Monitor(api_client, settings)
    yield started
    started.watcher.stop()


def template(image: str, **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "app", "image": image, **container}], "terminationGracePeriodSeconds": 0},
    }


def labelled(name: str, pod_template: dict[str, Any]) -> dict[str, Any]:
    pod_template["metadata"]["labels"] = {"app": name}
    return pod_template


def stateful_set(name: str, image: str, replicas: int = 3) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": {"app": name}},
            "template": labelled(name, template(image)),
        },
    }


def daemon_set(name: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": labelled(name, template(image))},
    }


def wait_until(probe: Callable[[], bool], timeout: float = WAIT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.2)
    return False


# ---- StatefulSets and DaemonSets -----------------------------------------------------------------
def test_crashing_stateful_set_and_daemon_set_are_one_incident_each(
    api_client: client.ApiClient, namespace: str, monitor: Monitor
) -> None:
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_stateful_set(namespace, as_body(stateful_set("db", "lab/db:2.0-crash")))
    apps.create_namespaced_daemon_set(namespace, as_body(daemon_set("agent", "lab/agent:2.0-crash")))
    db = ObjectRef(kind="StatefulSet", namespace=namespace, name="db")
    agent = ObjectRef(kind="DaemonSet", namespace=namespace, name="agent")

    for workload, pods in ((db, 3), (agent, 3)):  # 3 replicas; 3 lab nodes
        monitor.sink.wait_for(FaultKind.CRASH_LOOP, workload)
        assert wait_until(
            lambda w=workload, n=pods: any(  # type: ignore[misc]
                i.workload == w and len(i.affected) == n for i in monitor.detector.open_incidents()
            )
        )
    time.sleep(3)
    for workload in (db, agent):
        assert len(opened(monitor.sink.about(workload), FaultKind.CRASH_LOOP)) == 1
        (incident,) = [
            i for i in monitor.detector.open_incidents() if i.workload == workload and i.kind is FaultKind.CRASH_LOOP
        ]
        assert {a.kind for a in incident.affected} == {"Pod"}
    # their own status says so too, past the grace: too few replicas (no rollout under way)
    for workload in (db, agent):
        incident = monitor.sink.wait_for(FaultKind.REPLICAS_UNAVAILABLE, workload)
        assert "available" in incident.evidence[0].message


def test_stateful_set_rollout_to_a_crashing_image_is_stuck_and_its_good_revision_was_known(
    api_client: client.ApiClient, namespace: str, monitor: Monitor
) -> None:
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_stateful_set(namespace, as_body(stateful_set("db", "lab/db:1.0", replicas=2)))
    db = ObjectRef(kind="StatefulSet", namespace=namespace, name="db")
    good = monitor.signals.wait_for(db)
    status = apps.read_namespaced_stateful_set_status("db", namespace).status
    assert status is not None
    assert good.template_hash == status.update_revision == status.current_revision
    assert good.revision == 1 and good.source == ObjectRef(
        kind="ControllerRevision", namespace=namespace, name=status.update_revision
    )

    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "lab/db:2.0-crash"}]}}}}
    apps.patch_namespaced_stateful_set("db", namespace, patch)
    incident = monitor.sink.wait_for(FaultKind.ROLLOUT_STUCK, db)
    assert "updated to revision" in incident.evidence[0].message
    assert len(monitor.signals.about(db)) == 1  # the crashing revision is never reported healthy


def test_daemon_set_and_deployment_revisions_are_reported_healthy_once(
    api_client: client.ApiClient, namespace: str, monitor: Monitor
) -> None:
    apps = client.AppsV1Api(api_client)
    apps.create_namespaced_daemon_set(namespace, as_body(daemon_set("agent", "lab/agent:1.0")))
    apps.create_namespaced_deployment(
        namespace,
        as_body(
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": labelled("web", template("lab/web:1.0")),
                },
            }
        ),
    )
    agent = ObjectRef(kind="DaemonSet", namespace=namespace, name="agent")
    web = ObjectRef(kind="Deployment", namespace=namespace, name="web")

    signal = monitor.signals.wait_for(agent)
    (revision,) = apps.list_namespaced_controller_revision(namespace, label_selector="app=agent").items
    assert revision.metadata is not None
    assert (signal.template_hash, signal.revision) == (revision.metadata.name, 1)
    signal = monitor.signals.wait_for(web)
    (replica_set,) = apps.list_namespaced_replica_set(namespace, label_selector="app=web").items
    assert replica_set.metadata is not None and replica_set.metadata.labels is not None
    assert signal.template_hash == replica_set.metadata.labels["pod-template-hash"] and signal.revision == 1
    assert signal.source == ObjectRef(kind="ReplicaSet", namespace=namespace, name=replica_set.metadata.name)
    time.sleep(4)  # two more stable windows: nothing new
    assert len(monitor.signals.about(agent)) == len(monitor.signals.about(web)) == 1


# ---- CronJobs ----------------------------------------------------------------------------------
def run_cron_job(api_client: client.ApiClient, namespace: str, cron_job: Any, run: str, exit_code: str) -> None:
    """`kubectl create job --from=cronjob/...`: a Job from the jobTemplate, controlled by the CronJob."""
    spec = api_client.sanitize_for_serialization(cron_job.spec.job_template.spec)  # type: ignore[no-untyped-call]
    spec["template"]["spec"]["containers"][0]["env"] = [{"name": "LAB_EXIT_CODE", "value": exit_code}]
    client.BatchV1Api(api_client).create_namespaced_job(
        namespace,
        as_body(
            {
                "metadata": {
                    "name": run,
                    "ownerReferences": [
                        {
                            "apiVersion": "batch/v1",
                            "kind": "CronJob",
                            "name": cron_job.metadata.name,
                            "uid": cron_job.metadata.uid,
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "spec": spec,
            }
        ),
    )


def test_failing_cron_job_runs_are_one_incident_of_the_cron_job_until_a_run_succeeds(
    api_client: client.ApiClient, namespace: str, monitor: Monitor
) -> None:
    batch = client.BatchV1Api(api_client)
    cron_job = batch.create_namespaced_cron_job(
        namespace,
        as_body(
            {
                "metadata": {"name": "nightly"},
                "spec": {
                    "schedule": "0 3 * * *",
                    "suspend": True,
                    "jobTemplate": {
                        "spec": {
                            "backoffLimit": 0,
                            "template": {
                                "spec": {
                                    "restartPolicy": "Never",
                                    "containers": [
                                        {
                                            "name": "report",
                                            "image": "lab/report:1.0",
                                            "env": [{"name": "LAB_EXIT_CODE", "value": "0"}],
                                        }
                                    ],
                                }
                            },
                        }
                    },
                },
            }
        ),
    )
    nightly = ObjectRef(kind="CronJob", namespace=namespace, name="nightly")

    for index in range(1, 4):
        run_cron_job(api_client, namespace, cron_job, f"nightly-{index}", "3")
        assert wait_until(
            lambda i=index: any(  # type: ignore[misc]
                e.message.startswith(f"{i} of the last {i} runs failed")
                for incident in monitor.detector.open_incidents()
                if incident.workload == nightly
                for e in incident.evidence
            )
        )
    (incident,) = [i for i in monitor.detector.open_incidents() if i.workload == nightly]
    assert incident.kind is FaultKind.JOB_FAILED and incident.evidence[0].reason == "BackoffLimitExceeded"
    assert "latest failed run: Job nightly-3" in incident.evidence[0].message
    assert len(opened(monitor.sink.about(nightly), FaultKind.JOB_FAILED)) == 1
    assert not any(i.workload.kind == "Job" for i in monitor.sink.incidents)
    assert monitor.detector.open_workloads(namespace) == [nightly]

    run_cron_job(api_client, namespace, cron_job, "nightly-4", "0")
    assert wait_until(lambda: any(i.state is IncidentState.RESOLVED for i in monitor.sink.about(nightly)))
    signal = monitor.signals.wait_for(nightly)
    assert signal.job == "nightly-4" and signal.revision is None
    stored = batch.read_namespaced_cron_job("nightly", namespace)
    assert stored.spec is not None and stored.spec.job_template.spec is not None
    job_template = api_client.sanitize_for_serialization(  # type: ignore[no-untyped-call]
        stored.spec.job_template.spec.template
    )
    job_template["spec"]["containers"][0]["env"] = [{"name": "LAB_EXIT_CODE", "value": "0"}]
    assert signal.template_hash == hash_pod_template(job_template)  # the API defaults both alike


# ---- FailedCreate ------------------------------------------------------------------------------
def test_a_resource_quota_failed_create_is_one_incident_with_the_quota_message(
    api_client: client.ApiClient, namespace: str, monitor: Monitor
) -> None:
    client.CoreV1Api(api_client).create_namespaced_resource_quota(
        namespace, as_body({"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "1"}}})
    )
    time.sleep(1)  # the quota controller computes the quota's status first; admission needs it
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace,
        as_body(
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": labelled("web", template("lab/web:1.0")),
                },
            }
        ),
    )
    web = ObjectRef(kind="Deployment", namespace=namespace, name="web")

    incident = monitor.sink.wait_for(FaultKind.FAILED_CREATE, web)
    evidence = incident.evidence[0]
    assert evidence.reason == "FailedCreate"
    assert "exceeded quota: pods" in evidence.message and "limited: pods=1" in evidence.message
    assert [a.kind for a in incident.affected] == ["ReplicaSet"]
    time.sleep(3)
    assert len(opened(monitor.sink.about(web), FaultKind.FAILED_CREATE)) == 1


# ---- init containers and probes (need the lab kubelet's init-container and probe support) ------
def test_failing_init_container_is_an_init_container_incident(
    api_client: client.ApiClient, namespace: str, monitor: Monitor
) -> None:
    for name, image in (("pull", "lab/migrate:v9-missing"), ("crash", "lab/migrate:v2-crash")):
        pod_template = labelled(name, template("lab/web:1.0"))
        pod_template["spec"]["initContainers"] = [{"name": "migrate", "image": image}]
        client.AppsV1Api(api_client).create_namespaced_deployment(
            namespace,
            as_body(
                {
                    "metadata": {"name": name},
                    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": pod_template},
                }
            ),
        )
    pull, crash = (ObjectRef(kind="Deployment", namespace=namespace, name=name) for name in ("pull", "crash"))

    evidence = monitor.sink.wait_for(FaultKind.INIT_CONTAINER, pull).evidence[0]
    assert evidence.container == "migrate" and evidence.reason in ("ErrImagePull", "ImagePullBackOff")
    assert "v9-missing" in evidence.message
    evidence = monitor.sink.wait_for(FaultKind.INIT_CONTAINER, crash).evidence[0]
    assert evidence.container == "migrate" and evidence.exit_code == 1
    time.sleep(3)  # an init container's failure is not also the app's pull failure or crash loop
    kinds = {i.kind for i in monitor.sink.about(pull) + monitor.sink.about(crash)}
    assert not kinds & {FaultKind.IMAGE_PULL, FaultKind.CRASH_LOOP}, kinds


def test_failing_liveness_probe_is_a_liveness_incident(
    api_client: client.ApiClient, namespace: str, monitor: Monitor
) -> None:
    probe = {"httpGet": {"path": "/healthz", "port": 9999}, "periodSeconds": 1, "failureThreshold": 1}
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace,
        as_body(
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": labelled("web", template("lab/web:1.0", livenessProbe=probe)),
                },
            }
        ),
    )
    incident = monitor.sink.wait_for(
        FaultKind.LIVENESS_FAILED, ObjectRef(kind="Deployment", namespace=namespace, name="web")
    )
    assert incident.evidence[0].container == "app"
    assert wait_until(
        lambda: any(  # the kubelet's Unhealthy Event says why, once the next restart is judged
            e.message.startswith("Liveness probe failed:")
            for i in monitor.detector.open_incidents()
            for e in i.evidence
        )
    ), monitor.detector.open_incidents()


def test_failing_readiness_probe_is_a_not_ready_incident(
    api_client: client.ApiClient, namespace: str, monitor: Monitor
) -> None:
    probe = {"httpGet": {"path": "/ready", "port": 9999}, "periodSeconds": 1}
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace,
        as_body(
            {
                "metadata": {"name": "web"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": labelled("web", template("lab/web:1.0", readinessProbe=probe)),
                },
            }
        ),
    )
    incident = monitor.sink.wait_for(FaultKind.NOT_READY, ObjectRef(kind="Deployment", namespace=namespace, name="web"))
    assert incident.evidence[0].container == "app" and incident.evidence[0].reason == "NotReady"
    assert incident.evidence[0].message.startswith("Readiness probe failed:"), incident.evidence


def test_stateful_set_daemon_set_and_job_failed_create_come_from_events_and_resolve_with_the_quota(
    api_client: client.ApiClient, namespace: str, monitor: Monitor
) -> None:
    core, apps, batch = client.CoreV1Api(api_client), client.AppsV1Api(api_client), client.BatchV1Api(api_client)
    core.create_namespaced_resource_quota(
        namespace, as_body({"metadata": {"name": "pods"}, "spec": {"hard": {"pods": "1"}}})
    )
    time.sleep(1)  # the quota controller computes the quota's status first; admission needs it
    apps.create_namespaced_stateful_set(namespace, as_body(stateful_set("db", "lab/db:1.0")))
    apps.create_namespaced_daemon_set(namespace, as_body(daemon_set("agent", "lab/agent:1.0")))
    batch.create_namespaced_job(
        namespace,
        as_body(
            {
                "metadata": {"name": "load"},
                "spec": {
                    "parallelism": 2,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "load",
                                    "image": "lab/load:1.0",
                                    "env": [{"name": "LAB_RUN_SECONDS", "value": "600"}],
                                }
                            ],
                        }
                    },
                },
            }
        ),
    )
    workloads = [
        ObjectRef(kind=kind, namespace=namespace, name=name)
        for kind, name in (("StatefulSet", "db"), ("DaemonSet", "agent"), ("Job", "load"))
    ]

    for workload in workloads:
        incident = monitor.sink.wait_for(FaultKind.FAILED_CREATE, workload)
        assert "exceeded quota: pods" in incident.evidence[0].message, incident.evidence
        assert incident.affected == [workload]
    core.delete_namespaced_resource_quota("pods", namespace)
    for workload in workloads:
        assert wait_until(
            lambda w=workload: any(  # type: ignore[misc]
                i.state is IncidentState.RESOLVED and i.kind is FaultKind.FAILED_CREATE for i in monitor.sink.about(w)
            )
        ), f"{workload}: {monitor.sink.summary()}"


def test_a_role_without_the_new_kinds_still_syncs_and_detects_what_it_may_watch(
    api_client: client.ApiClient, namespace: str
) -> None:
    core, rbac = client.CoreV1Api(api_client), client.RbacAuthorizationV1Api(api_client)
    core.create_namespaced_service_account(namespace, as_body({"metadata": {"name": "narrow"}}))
    rbac.create_namespaced_role(
        namespace,
        as_body(
            {
                "metadata": {"name": "narrow"},
                "rules": [
                    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
                    {"apiGroups": ["apps"], "resources": ["deployments", "replicasets"], "verbs": ["list", "watch"]},
                    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "watch"]},
                ],
            }
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        as_body(
            {
                "metadata": {"name": "narrow"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "narrow"},
                "subjects": [{"kind": "ServiceAccount", "name": "narrow", "namespace": namespace}],
            }
        ),
    )
    settings = Settings(namespaces=[namespace], aggregation_window_seconds=1.0)
    sink = Sink()
    watcher = Watcher(
        settings,
        token_client(api_client, namespace, "narrow", seconds=600),
        FaultDetector(settings, sink),
        watch_timeout_seconds=60,
        max_backoff_seconds=2.0,
    )
    watcher.start()
    try:
        assert watcher.wait_synced(30)
        assert watcher.forbidden_kinds == ["CronJob", "DaemonSet", "FailedCreateEvent", "StatefulSet", "UnhealthyEvent"]
        client.AppsV1Api(api_client).create_namespaced_deployment(
            namespace,
            as_body(
                {
                    "metadata": {"name": "web"},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {"app": "web"}},
                        "template": labelled("web", template("lab/web:crash")),
                    },
                }
            ),
        )
        sink.wait_for(FaultKind.CRASH_LOOP, ObjectRef(kind="Deployment", namespace=namespace, name="web"))
    finally:
        watcher.stop()
