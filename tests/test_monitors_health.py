"""The known-good signal: health rules per kind, the stable window, once per revision; the detector's outage views."""

from __future__ import annotations

from datetime import timedelta

from core.models import ObjectRef
from monitors.health import (
    HealthyRevision,
    daemonset_healthy,
    deployment_healthy,
    is_stable,
    job_healthy,
    stable_at,
    statefulset_healthy,
)
from monitors.known_good import KnownGood
from monitors.revisions import Revision, RevisionIndex
from monitors.trim import ControllerRevisionView, DeploymentView, ReplicaSetView
from tests.test_monitors_detector import break_pods, deployment, detector, later
from tests.test_monitors_patterns import NOW
from tests.test_monitors_patterns import deployment as deployment_obj
from tests.test_monitors_workloads import CRON, cron_run, daemon_set, stateful_set

WINDOW = timedelta(seconds=60)
WEB = ObjectRef(kind="Deployment", namespace="shop", name="web")


def healthy_deployment(**status: int) -> DeploymentView:
    obj = deployment_obj()
    obj["status"] |= {"readyReplicas": 3, "availableReplicas": 3, "unavailableReplicas": 0, **status}
    return DeploymentView.from_api(obj)


# ---- rules -------------------------------------------------------------------------------------
def test_deployment_health_needs_every_replica_updated_ready_and_available() -> None:
    assert deployment_healthy(healthy_deployment())
    assert not deployment_healthy(healthy_deployment(readyReplicas=2))
    assert not deployment_healthy(healthy_deployment(updatedReplicas=2))
    assert not deployment_healthy(healthy_deployment(unavailableReplicas=1))
    assert not deployment_healthy(healthy_deployment(observedGeneration=3))  # the newest spec is not observed yet
    assert healthy_deployment().revision == "7"


def test_stateful_set_daemon_set_and_job_health() -> None:
    assert statefulset_healthy(stateful_set())
    assert not statefulset_healthy(stateful_set(update="db-5c4b"))
    assert not statefulset_healthy(stateful_set(ready=2))
    assert daemonset_healthy(daemon_set())
    assert not daemonset_healthy(daemon_set(updated=2)) and not daemonset_healthy(daemon_set(observed=4))
    assert job_healthy(cron_run("nightly-1", 60, "succeeded"))
    assert not job_healthy(cron_run("nightly-2", 60, "failed")) and not job_healthy(cron_run("nightly-3", 60, "active"))


def test_stable_only_after_a_window_without_faults() -> None:
    since = NOW - timedelta(seconds=90)
    assert is_stable(since, None, NOW, WINDOW)
    assert not is_stable(since, NOW - timedelta(seconds=30), NOW, WINDOW)  # a fault ended 30 s ago
    assert not is_stable(since, NOW, NOW, WINDOW)  # a fault right now
    assert not is_stable(NOW - timedelta(seconds=59), None, NOW, WINDOW)
    assert stable_at(since, NOW - timedelta(seconds=30), WINDOW) == NOW + timedelta(seconds=30)


# ---- once per revision -------------------------------------------------------------------------
def revision(hash_: str, number: int | None = 4) -> Revision:
    return Revision(ObjectRef(kind="ReplicaSet", namespace="shop", name=f"web-{hash_}"), number, hash_)


def test_known_good_fires_once_per_revision_after_the_window() -> None:
    heard: list[HealthyRevision] = []
    tracker = KnownGood(heard.append, 60)
    assert tracker.observe(WEB, revision("aaa"), None, NOW) == NOW + WINDOW
    assert tracker.observe(WEB, revision("aaa"), None, NOW + timedelta(seconds=30)) == NOW + WINDOW
    assert heard == []
    assert tracker.observe(WEB, revision("aaa"), None, NOW + WINDOW) is None
    (signal,) = heard
    assert (signal.workload, signal.revision, signal.template_hash) == (WEB, 4, "aaa")
    assert signal.source == ObjectRef(kind="ReplicaSet", namespace="shop", name="web-aaa")
    assert signal.observed_at == NOW + WINDOW and signal.job is None
    for seconds in (61, 200, 500):  # still healthy: nothing new
        tracker.observe(WEB, revision("aaa"), None, NOW + timedelta(seconds=seconds))
    tracker.observe(WEB, None, None, NOW + timedelta(seconds=600))  # a blip, back to the same revision
    tracker.observe(WEB, revision("aaa"), None, NOW + timedelta(seconds=700))
    tracker.observe(WEB, revision("aaa"), None, NOW + timedelta(seconds=800))
    assert len(heard) == 1


def test_a_new_revision_and_a_rollback_are_each_reported() -> None:
    heard: list[HealthyRevision] = []
    tracker = KnownGood(heard.append, 60)
    for hash_, start in (("aaa", 0), ("bbb", 100), ("aaa", 200)):
        tracker.observe(WEB, revision(hash_), None, NOW + timedelta(seconds=start))
        tracker.observe(WEB, revision(hash_), None, NOW + timedelta(seconds=start + 60))
    assert [h.template_hash for h in heard] == ["aaa", "bbb", "aaa"]


def test_a_fault_during_the_window_postpones_the_signal() -> None:
    heard: list[HealthyRevision] = []
    tracker = KnownGood(heard.append, 60)
    tracker.observe(WEB, revision("aaa"), None, NOW)
    assert tracker.observe(WEB, revision("aaa"), NOW + WINDOW, NOW + WINDOW) == NOW + 2 * WINDOW  # faulty now
    assert tracker.observe(WEB, revision("aaa"), NOW + timedelta(seconds=70), NOW + timedelta(seconds=100)) == (
        NOW + timedelta(seconds=130)
    )
    assert heard == []
    tracker.observe(WEB, revision("aaa"), NOW + timedelta(seconds=70), NOW + timedelta(seconds=130))
    assert len(heard) == 1


def test_a_failing_consumer_does_not_break_the_tracker() -> None:
    def boom(_: HealthyRevision) -> None:
        raise RuntimeError("store down")

    tracker = KnownGood(boom, 0)
    assert tracker.observe(WEB, revision("aaa"), None, NOW) is None


def test_cron_job_signal_names_the_job() -> None:
    heard: list[HealthyRevision] = []
    job = ObjectRef(kind="Job", namespace="shop", name="nightly-29000001")
    KnownGood(heard.append, 0).observe(CRON, Revision(job, None, "f00d"), None, NOW)
    assert heard[0].job == "nightly-29000001" and heard[0].revision is None


# ---- which revision is current -----------------------------------------------------------------
def test_revision_index_for_deployments_stateful_sets_and_daemon_sets() -> None:
    index = RevisionIndex()
    for name, number in (("web-aaa", "6"), ("web-bbb", "7")):
        index.observe(
            ReplicaSetView.from_api(
                {
                    "metadata": {
                        "name": name,
                        "namespace": "shop",
                        "labels": {"pod-template-hash": name[4:]},
                        "annotations": {"deployment.kubernetes.io/revision": number},
                        "ownerReferences": [{"kind": "Deployment", "name": "web", "controller": True}],
                    }
                }
            )
        )
    current = index.by_number(WEB, 7)
    assert current is not None and (current.template_hash, current.source.name) == ("bbb", "web-bbb")
    agent = ObjectRef(kind="DaemonSet", namespace="shop", name="agent")
    for cr_name, cr_number in (("agent-5f6d7", 2), ("agent-8c9b4", 3)):
        index.observe(
            ControllerRevisionView.from_api(
                {
                    "metadata": {
                        "name": cr_name,
                        "namespace": "shop",
                        "ownerReferences": [{"kind": "DaemonSet", "name": "agent", "controller": True}],
                    },
                    "revision": cr_number,
                }
            )
        )
    newest = index.newest(agent)
    assert newest is not None and (newest.template_hash, newest.number) == ("agent-8c9b4", 3)
    assert index.by_name(agent, "agent-5f6d7") is not None
    index.replace("ControllerRevision", "shop", [])
    assert index.newest(agent) is None and index.by_number(WEB, 7) is not None


# ---- detector: open workloads and fault history ------------------------------------------------
def test_open_workloads_counts_each_workload_once() -> None:
    d, _ = detector()
    break_pods(d, deployment("web"), 3)
    break_pods(d, deployment("api"), 1)
    break_pods(d, deployment("blog", "other"), 1)
    assert d.open_workloads("shop") == []  # nothing emitted yet
    d.tick(later(1))
    assert d.open_workloads("shop") == [deployment("api"), deployment("web")]
    assert d.open_workloads("other") == [deployment("blog", "other")]


def test_last_fault_at_is_now_while_faulty_then_when_the_fault_ended() -> None:
    d, _ = detector()
    assert d.last_fault_at(deployment(), later(0)) is None
    (p,) = break_pods(d, deployment(), 1)
    assert d.last_fault_at(deployment(), later(0.5)) == later(0.5)
    d.observe(p, [], later(2))
    assert d.last_fault_at(deployment(), later(10)) == later(2)
