"""New failure patterns: init containers, liveness, readiness, FailedCreate, StatefulSet/DaemonSet rollouts, CronJob runs.

Same style as test_monitors_patterns: API-shaped dicts, trimmed views, an explicit `now`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from core.models import FaultKind, ObjectRef
from monitors.cronjobs import CronJobRuns, cron_job_faults
from monitors.failed_creates import FailedCreates
from monitors.owners import OwnerIndex, workload_of_job
from monitors.patterns import (
    daemonset_faults,
    daemonset_missing_pods,
    failed_create_event_faults,
    failed_create_faults,
    job_missing_pods,
    pod_faults,
    pod_recheck_at,
    statefulset_faults,
    statefulset_missing_pods,
    workload_recheck_at,
)
from monitors.probe_events import ProbeEvents, probe_kind
from monitors.templates import hash_pod_template
from monitors.trim import DaemonSetView, EventView, JobView, PodView, ReplicaSetView, StatefulSetView
from tests.test_monitors_detector import detector, later
from tests.test_monitors_patterns import (
    IGNORE,
    NOW,
    SETTINGS,
    WORKLOAD,
    at,
    container_status,
    pod,
    running,
    terminated,
    ts,
    waiting,
)


def faults_of(obj: dict[str, Any], now: Any = NOW) -> list[Any]:
    return pod_faults(PodView.from_api(obj, IGNORE), WORKLOAD, now, SETTINGS)


def with_probes(obj: dict[str, Any], *, liveness: bool = False, readiness: bool = False) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5}
    for container in obj["spec"]["containers"]:
        if liveness:
            container["livenessProbe"] = probe
        if readiness:
            container["readinessProbe"] = probe
    return obj


def initializing(init_statuses: list[dict[str, Any]], *, phase: str = "Pending") -> dict[str, Any]:
    """A pod whose init containers have not completed: app containers wait in PodInitializing."""
    obj = pod([container_status(state=waiting("PodInitializing"))], phase=phase, init_statuses=init_statuses)
    for condition in obj["status"]["conditions"]:
        if condition["type"] == "Initialized":
            condition.update(status="False", reason="ContainersNotInitialized")
    obj["spec"]["initContainers"] = [{"name": s["name"], "image": s["image"]} for s in init_statuses]
    return obj


# ---- init containers ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("ErrImagePull", 'failed to pull image "lab/migrate:v9-missing": not found'),
        ("ImagePullBackOff", 'Back-off pulling image "lab/migrate:v9-missing"'),
        ("CreateContainerConfigError", 'secret "db" not found'),
    ],
)
def test_init_container_waiting_is_init_container_not_image_pull(reason: str, message: str) -> None:
    (fault,) = faults_of(initializing([container_status("migrate", state=waiting(reason, message))]))
    assert fault.kind is FaultKind.INIT_CONTAINER
    assert (fault.evidence.reason, fault.evidence.message, fault.evidence.container) == (reason, message, "migrate")


def test_init_container_crash_loop_keeps_its_exit_code() -> None:
    status = container_status(
        "migrate", state=waiting("CrashLoopBackOff", "back-off 20s"), last_state=terminated("Error", 3, 7), restarts=3
    )
    (fault,) = faults_of(initializing([status]))
    assert fault.kind is FaultKind.INIT_CONTAINER
    assert (fault.evidence.reason, fault.evidence.exit_code, fault.evidence.restart_count) == ("CrashLoopBackOff", 3, 3)
    assert fault.evidence.since == at(7)


def test_init_container_exit_non_zero_fails_the_pod() -> None:
    (fault,) = faults_of(initializing([container_status("migrate", state=terminated("Error", 1, 4))], phase="Failed"))
    assert fault.kind is FaultKind.INIT_CONTAINER and fault.evidence.exit_code == 1 and fault.evidence.since == at(4)


def test_completed_init_container_and_running_sidecar_are_no_fault() -> None:
    done = container_status("migrate", state=terminated("Completed", 0, 30))
    assert faults_of(pod(init_statuses=[done])) == []
    assert faults_of(initializing([done, container_status("wait-db", state=running(2))])) == []


def test_a_crashing_sidecar_is_a_crash_loop_not_an_init_failure() -> None:
    obj = initializing(
        [container_status("proxy", state=waiting("CrashLoopBackOff"), last_state=terminated("Error", 1, 2), restarts=2)]
    )
    obj["spec"]["initContainers"][0]["restartPolicy"] = "Always"
    (fault,) = faults_of(obj)
    assert (fault.kind, fault.evidence.container) == (FaultKind.CRASH_LOOP, "proxy")


# ---- liveness ----------------------------------------------------------------------------------
@pytest.mark.parametrize("exit_code", [137, 143])
def test_restarts_killed_by_the_liveness_probe(exit_code: int) -> None:
    obj = with_probes(
        pod(
            [
                container_status(
                    state=waiting("CrashLoopBackOff", "back-off 40s"),
                    last_state=terminated("Error", exit_code, 6),
                    restarts=4,
                )
            ]
        ),
        liveness=True,
    )
    (fault,) = faults_of(obj)
    assert fault.kind is FaultKind.LIVENESS_FAILED
    e = fault.evidence
    assert (e.container, e.exit_code, e.restart_count, e.since) == ("app", exit_code, 4, at(6))
    assert "liveness probe" in e.message and "back-off 40s" in e.message


def test_liveness_restart_while_running_again_unready() -> None:
    obj = with_probes(
        pod([container_status(state=running(1), last_state=terminated("Completed", 0, 2), restarts=2)]), liveness=True
    )
    (fault,) = faults_of(obj)
    assert fault.kind is FaultKind.LIVENESS_FAILED


def unhealthy(message: str, container: str = "app", seconds_ago: float = 3) -> EventView:
    return EventView.from_api(
        {
            "metadata": {"name": "web-6b7f9c5d4-x2x7q.18a2b3c4", "namespace": "shop"},
            "involvedObject": {
                "kind": "Pod",
                "name": "web-6b7f9c5d4-x2x7q",
                "namespace": "shop",
                "fieldPath": f"spec.containers{{{container}}}",
            },
            "reason": "Unhealthy",
            "message": message,
            "type": "Warning",
            "lastTimestamp": ts(seconds_ago),
        }
    )


def test_probe_events_are_the_evidence_and_a_liveness_event_decides_an_ambiguous_exit() -> None:
    index = ProbeEvents()
    index.record(unhealthy("Liveness probe failed: HTTP probe failed with statuscode: 500", seconds_ago=10))
    index.record(unhealthy("Liveness probe failed: HTTP probe failed with statuscode: 503", seconds_ago=2))
    index.record(unhealthy("Liveness probe failed: stale", seconds_ago=30))  # older: ignored
    index.record(unhealthy("Readiness probe failed: Get http://10.244.0.7:8080/ready: connection refused"))
    probes = index.of("shop", "web-6b7f9c5d4-x2x7q")
    assert probes[("app", "Liveness")] == "Liveness probe failed: HTTP probe failed with statuscode: 503"
    # a SIGTERM handler that exits 1: the Unhealthy Event says the probe killed it
    obj = with_probes(
        pod([container_status(state=waiting("CrashLoopBackOff"), last_state=terminated("Error", 1, 3), restarts=2)]),
        liveness=True,
    )
    assert [f.kind for f in faults_of(obj)] == [FaultKind.CRASH_LOOP]
    (fault,) = pod_faults(PodView.from_api(obj, IGNORE), WORKLOAD, NOW, SETTINGS, probes)
    assert fault.kind is FaultKind.LIVENESS_FAILED
    assert fault.evidence.message.startswith("Liveness probe failed: HTTP probe failed with statuscode: 503; restarted")
    (not_ready,) = pod_faults(PodView.from_api(unready(130), IGNORE), WORKLOAD, NOW, SETTINGS, probes)
    assert not_ready.evidence.message.startswith("Readiness probe failed: Get http://10.244.0.7:8080/ready")
    index.forget("shop", "web-6b7f9c5d4-x2x7q")
    assert index.of("shop", "web-6b7f9c5d4-x2x7q") == {} and len(index) == 0
    assert probe_kind("Startup probe errored: rpc error") == "Startup" and probe_kind("Back-off restarting") is None


def test_a_crash_from_bad_args_stays_a_crash_loop_even_with_a_liveness_probe() -> None:
    obj = with_probes(
        pod([container_status(state=waiting("CrashLoopBackOff"), last_state=terminated("Error", 2, 3), restarts=3)]),
        liveness=True,
    )
    (fault,) = faults_of(obj)
    assert fault.kind is FaultKind.CRASH_LOOP and fault.evidence.exit_code == 2


def test_oom_outranks_a_liveness_probe() -> None:
    obj = with_probes(
        pod(
            [
                container_status(
                    state=waiting("CrashLoopBackOff"), last_state=terminated("OOMKilled", 137, 3), restarts=3
                )
            ]
        ),
        liveness=True,
    )
    assert [f.kind for f in faults_of(obj)] == [FaultKind.OOM_KILLED]


def test_without_a_liveness_probe_a_kill_is_a_crash_loop() -> None:
    obj = pod([container_status(state=waiting("CrashLoopBackOff"), last_state=terminated("Error", 137, 3), restarts=3)])
    assert [f.kind for f in faults_of(obj)] == [FaultKind.CRASH_LOOP]


# ---- readiness never reached --------------------------------------------------------------------
def unready(seconds: float, *, readiness: bool = True) -> dict[str, Any]:
    obj = pod([container_status(state=running(seconds + 5), ready=False)], containers_ready_since=seconds)
    return with_probes(obj, readiness=readiness)


def test_running_but_not_ready_only_after_the_grace_period() -> None:
    assert faults_of(unready(100)) == []
    (fault,) = faults_of(unready(130))
    assert fault.kind is FaultKind.NOT_READY
    e = fault.evidence
    assert (e.reason, e.container, e.since) == ("NotReady", "app", at(130))
    assert "readiness probe has not passed" in e.message and "containers with unready status: [app]" in e.message


def test_a_slow_readiness_probe_gets_the_time_its_spec_allows() -> None:
    slow = unready(200)
    slow["spec"]["containers"][0]["readinessProbe"] |= {"initialDelaySeconds": 300, "failureThreshold": 3}
    assert faults_of(slow) == []  # 300 s delay + 5 s x 3 failures: not failed yet at 200 s
    assert pod_recheck_at(PodView.from_api(slow), SETTINGS) == at(200) + timedelta(seconds=315)
    assert [f.kind for f in faults_of(slow, NOW + timedelta(seconds=120))] == [FaultKind.NOT_READY]


def test_not_ready_pod_says_when_to_look_again() -> None:
    assert pod_recheck_at(PodView.from_api(unready(100)), SETTINGS) == at(100) + timedelta(seconds=120)
    assert pod_recheck_at(PodView.from_api(pod()), SETTINGS) is None


def test_a_crash_loop_is_not_also_not_ready() -> None:
    obj = pod(
        [container_status(state=running(1), last_state=terminated("Error", 1, 2), restarts=5)],
        containers_ready_since=600,
    )
    assert [f.kind for f in faults_of(obj)] == [FaultKind.CRASH_LOOP]


def test_a_pod_still_starting_is_not_not_ready() -> None:
    obj = pod([container_status(state=waiting("ContainerCreating"))], phase="Pending", containers_ready_since=600)
    assert faults_of(obj) == []


# ---- FailedCreate ------------------------------------------------------------------------------
QUOTA_MESSAGE = (
    'pods "web-6b7f9c5d4-abcde" is forbidden: exceeded quota: compute, requested: limits.memory=512Mi, '
    "used: limits.memory=1Gi, limited: limits.memory=1Gi"
)


def replica_set(failure: str | None = QUOTA_MESSAGE) -> dict[str, Any]:
    conditions = (
        []
        if failure is None
        else [
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": failure,
                "lastTransitionTime": ts(15),
            }
        ]
    )
    return {
        "metadata": {
            "name": "web-6b7f9c5d4",
            "namespace": "shop",
            "labels": {"pod-template-hash": "6b7f9c5d4"},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
            "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}],
        },
        "spec": {"replicas": 3},
        "status": {"replicas": 0, "conditions": conditions},
    }


def test_replica_failure_is_failed_create_on_the_deployment_with_the_message_verbatim() -> None:
    view = ReplicaSetView.from_api(replica_set())
    subject = ObjectRef(kind="ReplicaSet", namespace="shop", name="web-6b7f9c5d4")
    (fault,) = failed_create_faults(view, subject, WORKLOAD, NOW)
    assert (fault.kind, fault.workload, fault.subject) == (FaultKind.FAILED_CREATE, WORKLOAD, subject)
    assert (fault.evidence.reason, fault.evidence.message, fault.evidence.since) == (
        "FailedCreate",
        QUOTA_MESSAGE,
        at(15),
    )
    assert (view.template_hash, view.revision) == ("6b7f9c5d4", "3")
    assert failed_create_faults(ReplicaSetView.from_api(replica_set(None)), subject, WORKLOAD, NOW) == []


STS_QUOTA_MESSAGE = (
    'create Pod db-1 in StatefulSet db failed error: pods "db-1" is forbidden: exceeded quota: pods, '
    "requested: pods=1, used: pods=1, limited: pods=1"
)


def failed_create_event(
    kind: str = "StatefulSet", name: str = "db", seconds_ago: float = 5, message: str = STS_QUOTA_MESSAGE
) -> EventView:
    return EventView.from_api(
        {
            "metadata": {"name": f"{name}.18a2b3c4d5e6f7a8", "namespace": "shop"},
            "involvedObject": {"kind": kind, "name": name, "namespace": "shop", "apiVersion": "apps/v1"},
            "reason": "FailedCreate",
            "message": message,
            "type": "Warning",
            "count": 12,
            "firstTimestamp": ts(60),
            "lastTimestamp": ts(seconds_ago),
        }
    )


def test_a_stateful_set_short_of_pods_with_a_failed_create_event_is_failed_create() -> None:
    db = ObjectRef(kind="StatefulSet", namespace="shop", name="db")
    short = stateful_set(ready=1, updated=3)
    assert statefulset_missing_pods(short.model_copy(update={"created_replicas": 1}))
    assert not statefulset_missing_pods(short.model_copy(update={"created_replicas": 3}))
    event = failed_create_event()
    (fault,) = failed_create_event_faults(event, True, db, db, NOW)
    assert (fault.kind, fault.workload, fault.evidence.reason) == (FaultKind.FAILED_CREATE, db, "FailedCreate")
    assert fault.evidence.message == STS_QUOTA_MESSAGE and fault.evidence.since == at(5)
    assert failed_create_event_faults(event, False, db, db, NOW) == []  # every pod exists: an old Event
    assert failed_create_event_faults(None, True, db, db, NOW) == []  # short of pods for another reason


def test_daemon_set_and_job_short_of_pods() -> None:
    assert daemonset_missing_pods(daemon_set().model_copy(update={"scheduled": 2}))
    assert not daemonset_missing_pods(daemon_set().model_copy(update={"scheduled": 3}))
    running_job = cron_run("nightly-1", 60, "active")
    assert job_missing_pods(running_job)  # parallelism 1, no active pod
    assert not job_missing_pods(running_job.model_copy(update={"active": 1}))
    assert not job_missing_pods(cron_run("nightly-2", 60, "failed"))
    assert not job_missing_pods(
        running_job.model_copy(update={"parallelism": 3, "completions": 3, "succeeded_pods": 2, "active": 1})
    )


def test_failed_creates_index_keeps_the_newest_event_while_the_workload_is_short() -> None:
    db = ObjectRef(kind="StatefulSet", namespace="shop", name="db")
    index = FailedCreates()
    view = stateful_set().model_copy(update={"created_replicas": 1})
    assert index.record(failed_create_event(seconds_ago=30, message="older")) is None  # not known short yet
    assert index.note(db, view, True) is not None
    assert index.record(failed_create_event(seconds_ago=5)) == view  # short: judge it again
    assert index.record(failed_create_event(seconds_ago=40, message="late and stale")) == view
    latest = index.note(db, view, True)
    assert latest is not None and latest.message == STS_QUOTA_MESSAGE
    assert index.record(failed_create_event(kind="ReplicaSet", name="web-1")) is None  # a condition says it
    assert index.note(db, view.model_copy(update={"created_replicas": 3}), False) is None
    assert len(index) == 0


# ---- StatefulSets and DaemonSets ---------------------------------------------------------------
def stateful_set(
    *,
    ready: int = 3,
    updated: int = 3,
    current: str = "db-7d9f",
    update: str = "db-7d9f",
    partition: int = 0,
    generation: int = 2,
    observed: int = 2,
) -> StatefulSetView:
    return StatefulSetView.from_api(
        {
            "metadata": {"name": "db", "namespace": "shop", "generation": generation},
            "spec": {
                "replicas": 3,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
            },
            "status": {
                "observedGeneration": observed,
                "replicas": 3,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "currentReplicas": 3 - updated,
                "updatedReplicas": updated,
                "currentRevision": current,
                "updateRevision": update,
            },
        }
    )


def test_healthy_stateful_set_has_no_fault() -> None:
    assert statefulset_faults(stateful_set(), at(500), NOW, SETTINGS) == []


def test_stateful_set_stuck_rollout_only_after_the_grace() -> None:
    sts = stateful_set(ready=2, updated=1, current="db-7d9f", update="db-5c4b")
    assert statefulset_faults(sts, at(60), NOW, SETTINGS) == []
    (fault,) = statefulset_faults(sts, at(121), NOW, SETTINGS)
    assert fault.kind is FaultKind.ROLLOUT_STUCK and fault.workload == ObjectRef(
        kind="StatefulSet", namespace="shop", name="db"
    )
    assert "2/3 available" in fault.evidence.message and "db-5c4b" in fault.evidence.message
    assert fault.evidence.since == at(121)
    assert workload_recheck_at(at(60), SETTINGS) == at(60) + timedelta(seconds=120)


def test_stateful_set_last_pod_updated_but_failing_is_still_a_rollout() -> None:
    (fault,) = statefulset_faults(stateful_set(ready=2, updated=3, update="db-5c4b"), at(200), NOW, SETTINGS)
    assert fault.kind is FaultKind.ROLLOUT_STUCK


def test_stateful_set_unavailable_without_a_rollout() -> None:
    (fault,) = statefulset_faults(stateful_set(ready=1), at(200), NOW, SETTINGS)
    assert fault.kind is FaultKind.REPLICAS_UNAVAILABLE and fault.evidence.reason == "MinimumReplicasUnavailable"
    # a partition holds the rest back on purpose: once the allowed pods are updated it is no longer rolling
    held = stateful_set(ready=2, updated=1, update="db-5c4b", partition=2)
    assert [f.kind for f in statefulset_faults(held, at(200), NOW, SETTINGS)] == [FaultKind.REPLICAS_UNAVAILABLE]


def daemon_set(*, ready: int = 3, updated: int = 3, generation: int = 5, observed: int = 5) -> DaemonSetView:
    return DaemonSetView.from_api(
        {
            "metadata": {"name": "agent", "namespace": "shop", "generation": generation},
            "spec": {"updateStrategy": {"type": "RollingUpdate"}},
            "status": {
                "observedGeneration": observed,
                "desiredNumberScheduled": 3,
                "currentNumberScheduled": 3,
                "numberReady": ready,
                "numberAvailable": ready,
                "numberUnavailable": 3 - ready,
                "updatedNumberScheduled": updated,
            },
        }
    )


def test_daemon_set_patterns() -> None:
    assert daemonset_faults(daemon_set(), at(500), NOW, SETTINGS) == []
    assert daemonset_faults(daemon_set(ready=2, updated=2), at(10), NOW, SETTINGS) == []
    (stuck,) = daemonset_faults(daemon_set(ready=2, updated=2), at(121), NOW, SETTINGS)
    assert stuck.kind is FaultKind.ROLLOUT_STUCK and "2/3 updated" in stuck.evidence.message
    (short,) = daemonset_faults(daemon_set(ready=2), at(121), NOW, SETTINGS)
    assert short.kind is FaultKind.REPLICAS_UNAVAILABLE


def test_stateful_set_and_daemon_set_pods_resolve_to_their_workload() -> None:
    index = OwnerIndex()
    sts_pod = PodView.from_api(pod(owner=("StatefulSet", "db"), name="db-0"))
    ds_pod = PodView.from_api(pod(owner=("DaemonSet", "agent"), name="agent-x7k2p"))
    assert index.workload_of(sts_pod) == ObjectRef(kind="StatefulSet", namespace="shop", name="db")
    assert index.workload_of(ds_pod) == ObjectRef(kind="DaemonSet", namespace="shop", name="agent")


# ---- CronJobs ----------------------------------------------------------------------------------
CRON = ObjectRef(kind="CronJob", namespace="shop", name="nightly")


def cron_run(name: str, created_ago: float, outcome: str, *, image: str = "lab/report:1.0") -> JobView:
    conditions = {
        "failed": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": ts(created_ago - 5),
            }
        ],
        "succeeded": [{"type": "Complete", "status": "True", "lastTransitionTime": ts(created_ago - 5)}],
        "active": [],
    }[outcome]
    return JobView.from_api(
        {
            "metadata": {
                "name": name,
                "namespace": "shop",
                "creationTimestamp": ts(created_ago),
                "ownerReferences": [{"kind": "CronJob", "name": "nightly", "controller": True}],
            },
            "spec": {
                "template": {
                    "metadata": {"labels": {"job-name": name}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "report", "image": image}]},
                }
            },
            "status": {"failed": 1 if outcome == "failed" else 0, "conditions": conditions},
        }
    )


def test_a_job_made_by_a_cron_job_is_a_run_of_the_cron_job() -> None:
    job = cron_run("nightly-29000001", 60, "failed")
    assert workload_of_job(job) == CRON
    index = OwnerIndex()
    index.observe(job)
    job_pod = PodView.from_api(pod(owner=("Job", "nightly-29000001"), name="nightly-29000001-q8x2z"))
    assert index.workload_of(job_pod) == CRON
    index.forget("shop", "nightly-29000001", kind="Job")
    assert index.workload_of(job_pod) == ObjectRef(kind="Job", namespace="shop", name="nightly-29000001")


def test_failing_runs_are_one_fault_of_the_cron_job_counting_the_failures() -> None:
    runs = CronJobRuns()
    runs.record(CRON, cron_run("nightly-1", 400, "succeeded"))
    for index, ago in enumerate((300, 200, 100), start=2):
        history = runs.record(CRON, cron_run(f"nightly-{index}", ago, "failed"))
    (fault,) = cron_job_faults(CRON, history, NOW)
    assert (fault.kind, fault.workload, fault.subject) == (FaultKind.JOB_FAILED, CRON, CRON)
    assert fault.evidence.reason == "BackoffLimitExceeded"
    assert fault.evidence.message.startswith("3 of the last 4 runs failed; latest failed run: Job nightly-4:")
    assert "backoff limit" in fault.evidence.message


def test_a_cron_job_recovers_when_a_run_succeeds_and_not_while_one_is_active() -> None:
    runs = CronJobRuns()
    runs.record(CRON, cron_run("nightly-1", 300, "failed"))
    history = runs.record(CRON, cron_run("nightly-2", 10, "active"))
    assert len(cron_job_faults(CRON, history, NOW)) == 1  # the newest finished run still failed
    history = runs.record(CRON, cron_run("nightly-2", 10, "succeeded"))
    assert cron_job_faults(CRON, history, NOW) == []


def test_the_run_history_outlives_the_controllers_job_clean_up_and_is_bounded() -> None:
    runs = CronJobRuns(runs_kept=3)
    runs.record(CRON, cron_run("nightly-1", 300, "failed"))
    runs.record(CRON, cron_run("nightly-2", 200, "failed"))
    runs.record(CRON, cron_run("nightly-3", 100, "active"))
    history = runs.job_deleted(CRON, "nightly-1")  # failedJobsHistoryLimit: the controller deleted it
    assert [r.job for r in history] == ["nightly-1", "nightly-2", "nightly-3"]
    assert [r.job for r in runs.job_deleted(CRON, "nightly-3")] == ["nightly-1", "nightly-2"]  # active: gone
    runs.record(CRON, cron_run("nightly-4", 50, "failed"))
    runs.record(CRON, cron_run("nightly-5", 40, "failed"))
    assert [r.job for r in runs.runs(CRON)] == ["nightly-2", "nightly-4", "nightly-5"]
    runs.forget(CRON)
    assert runs.runs(CRON) == [] and len(runs) == 0


def test_a_jobs_template_hash_matches_its_cron_jobs_job_template() -> None:
    job = cron_run("nightly-1", 100, "succeeded")
    job_template = {
        "metadata": {"labels": {"team": "data"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "report", "image": "lab/report:1.0"}]},
    }
    assert job.template_hash == hash_pod_template(job_template)  # template labels differ, the pod spec does not
    assert cron_run("nightly-2", 50, "succeeded", image="lab/report:2.0").template_hash != job.template_hash


def test_every_failing_run_is_one_incident_of_the_cron_job() -> None:
    d, sink = detector()
    index, runs = OwnerIndex(), CronJobRuns()
    for run, ago in (("nightly-1", 300), ("nightly-2", 200), ("nightly-3", 100)):
        job = cron_run(run, ago, "failed")
        index.observe(job)
        crash = pod(
            [container_status(state=waiting("CrashLoopBackOff"), last_state=terminated("Error", 1, 2), restarts=2)],
            owner=("Job", run),
            name=f"{run}-pod",
        )
        view = PodView.from_api(crash)
        d.observe(
            ObjectRef(kind="Pod", namespace="shop", name=view.name),
            pod_faults(view, index.workload_of(view), NOW, SETTINGS),
            later(0),
        )
        d.observe(CRON, cron_job_faults(CRON, runs.record(CRON, job), NOW), later(0))
    d.tick(later(1))
    assert sorted((i.kind, i.workload) for i in sink.opened()) == [
        (FaultKind.CRASH_LOOP, CRON),
        (FaultKind.JOB_FAILED, CRON),
    ]
    (failed,) = [i for i in d.open_incidents() if i.kind is FaultKind.JOB_FAILED]
    assert failed.affected == [CRON] and failed.evidence[0].message.startswith("3 of the last 3 runs failed")
    assert d.open_workloads("shop") == [CRON]
