"""The judge's reading of StatefulSets, DaemonSets and CronJobs, without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from core import k8s
from core.models import ObjectRef
from orchestrator.assessment import Baseline, Health, assess, broken_guarantees
from orchestrator.rollout import runs_to_judge

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEMPLATE = {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db:1"}]}}
BAD = {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "db:2-missing"}]}}


def revision(number: int, template: dict[str, Any], owner: str = "sts-uid") -> dict[str, Any]:
    return {
        "kind": "ControllerRevision",
        "revision": number,
        "metadata": {
            "name": f"db-{number}abc",
            "labels": {"controller.kubernetes.io/hash": f"{number}abc"},
            "ownerReferences": [{"uid": owner, "controller": True}],
        },
        "data": {"spec": {"template": {**template, "$patch": "replace"}}},
    }


def statefulset(
    *,
    replicas: int = 3,
    ready: int = 3,
    updated: int = 3,
    current: str = "db-2abc",
    update: str = "db-2abc",
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": "StatefulSet",
        "metadata": {"name": "db", "uid": "sts-uid", "generation": 2},
        "spec": {"replicas": replicas, "template": TEMPLATE, "updateStrategy": strategy or {"type": "RollingUpdate"}},
        "status": {
            "observedGeneration": 2,
            "replicas": replicas,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "currentRevision": current,
            "updateRevision": update,
        },
    }


def pod(
    name: str, revision_label: str, *, ready: bool = True, waiting: str | None = None, owner: str = "sts-uid"
) -> dict[str, Any]:
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "metadata": {
            "name": name,
            "uid": name,
            "labels": {k8s.CONTROLLER_REVISION_HASH_LABEL: revision_label},
            "ownerReferences": [{"uid": owner, "controller": True}],
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "db", "restartCount": 0, "state": state, "lastState": {}}],
        },
    }


HISTORY = [revision(1, BAD), revision(2, TEMPLATE)]
STS = ObjectRef(kind="StatefulSet", namespace="shop", name="db")


def test_statefulset_complete_only_when_every_ordinal_is_updated_and_ready() -> None:
    baseline = Baseline.of(STS, statefulset())
    pods = [pod(f"db-{n}", "db-2abc") for n in range(3)]
    assert assess(baseline, statefulset(), HISTORY, pods, NOW, {}).health is Health.HEALTHY
    rolling = statefulset(updated=2, current="db-1abc")
    assert assess(baseline, rolling, HISTORY, pods[:2], NOW, {}).health is Health.PROGRESSING
    not_ready = statefulset(ready=2)
    assert assess(baseline, not_ready, HISTORY, pods, NOW, {}).health is Health.PROGRESSING
    failing = [*pods[:2], pod("db-2", "db-2abc", ready=False, waiting="CrashLoopBackOff")]
    result = assess(baseline, statefulset(ready=2), HISTORY, failing, NOW, {})
    assert result.health is Health.FAILING and "CrashLoopBackOff" in result.reasons[0]


def test_statefulset_partition_and_on_delete() -> None:
    partitioned = statefulset(
        updated=1, current="db-1abc", strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}
    )
    pods = [pod("db-0", "db-1abc"), pod("db-1", "db-1abc"), pod("db-2", "db-2abc")]
    assert assess(Baseline.of(STS, partitioned), partitioned, HISTORY, pods, NOW, {}).health is Health.HEALTHY
    on_delete = statefulset(updated=1, current="db-1abc", strategy={"type": "OnDelete"})
    assert assess(Baseline.of(STS, on_delete), on_delete, HISTORY, pods, NOW, {}).health is Health.HEALTHY
    assert (
        assess(
            Baseline.of(STS, on_delete), statefulset(ready=2, strategy={"type": "OnDelete"}), HISTORY, pods, NOW, {}
        ).health
        is Health.PROGRESSING
    )


def test_statefulset_scaled_down_is_a_broken_guarantee() -> None:
    baseline = Baseline.of(STS, statefulset(replicas=3))
    assert "scaled down from 3 to 1" in broken_guarantees(baseline, statefulset(replicas=1))[0]


def daemonset(
    *, desired: int = 3, ready: int = 3, updated: int = 3, unavailable: int = 0, strategy: str = "RollingUpdate"
) -> dict[str, Any]:
    return {
        "kind": "DaemonSet",
        "metadata": {"name": "agent", "uid": "ds-uid", "generation": 4},
        "spec": {"template": TEMPLATE, "updateStrategy": {"type": strategy}},
        "status": {
            "observedGeneration": 4,
            "desiredNumberScheduled": desired,
            "numberReady": ready,
            "updatedNumberScheduled": updated,
            "numberUnavailable": unavailable,
        },
    }


def test_daemonset_needs_every_scheduled_pod_ready_and_updated() -> None:
    ref = ObjectRef(kind="DaemonSet", namespace="shop", name="agent")
    history = [revision(1, BAD, "ds-uid"), revision(2, TEMPLATE, "ds-uid")]
    pods = [pod(f"agent-{n}", "2abc", owner="ds-uid") for n in range(3)]
    baseline = Baseline.of(ref, daemonset())
    assert baseline.replicas is None
    assert assess(baseline, daemonset(), history, pods, NOW, {}).health is Health.HEALTHY
    assert assess(baseline, daemonset(updated=2), history, pods, NOW, {}).health is Health.PROGRESSING
    assert assess(baseline, daemonset(ready=2), history, pods[:2], NOW, {}).health is Health.PROGRESSING
    broken = [*pods[:2], pod("agent-2", "2abc", ready=False, waiting="ImagePullBackOff", owner="ds-uid")]
    assert assess(baseline, daemonset(ready=2), history, broken, NOW, {}).health is Health.FAILING
    old_pod_on_delete = [*pods[:2], pod("agent-2", "1abc", owner="ds-uid")]
    on_delete = daemonset(updated=2, strategy="OnDelete")
    assert assess(baseline, on_delete, history, old_pod_on_delete, NOW, {}).health is Health.HEALTHY


CRON = ObjectRef(kind="CronJob", namespace="shop", name="nightly")


def cronjob(template: dict[str, Any] = TEMPLATE, *, suspend: bool = False) -> dict[str, Any]:
    return {
        "kind": "CronJob",
        "metadata": {"name": "nightly", "uid": "cj-uid"},
        "spec": {"schedule": "*/1 * * * *", "suspend": suspend, "jobTemplate": {"spec": {"template": template}}},
    }


def job(name: str, template: dict[str, Any], *, created: datetime, condition: str | None = None) -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True", "reason": "BackoffLimitExceeded"}] if condition else []
    return {
        "kind": "Job",
        "metadata": {
            "name": name,
            "uid": name,
            "creationTimestamp": created.isoformat(),
            "ownerReferences": [{"uid": "cj-uid", "controller": True}],
        },
        "spec": {"template": template},
        "status": {"conditions": conditions},
    }


def test_cronjob_judges_only_runs_from_the_current_template_after_the_fix() -> None:
    baseline = Baseline.of(CRON, cronjob())
    before = job("nightly-1", TEMPLATE, created=NOW - timedelta(minutes=5), condition="Complete")
    old_template = job("nightly-2", BAD, created=NOW + timedelta(seconds=5), condition="Failed")
    assert runs_to_judge(cronjob(), [before, old_template], NOW) == []
    waiting = assess(baseline, cronjob(), [before, old_template], [], NOW, {})
    assert waiting.health is Health.PROGRESSING and waiting.reasons[0].startswith("waiting for the next run")
    succeeded = job("nightly-3", TEMPLATE, created=NOW + timedelta(seconds=30), condition="Complete")
    assert assess(baseline, cronjob(), [before, succeeded], [], NOW, {}).health is Health.HEALTHY
    failed = job("nightly-3", TEMPLATE, created=NOW + timedelta(seconds=30), condition="Failed")
    result = assess(baseline, cronjob(), [failed], [], NOW, {})
    assert result.health is Health.BROKEN and "nightly-3 failed" in result.reasons[0]
    assert "suspended" in assess(baseline, cronjob(suspend=True), [], [], NOW, {}).reasons[0]


def test_a_running_cronjob_pod_with_a_fault_is_failing() -> None:
    running = job("nightly-4", TEMPLATE, created=NOW + timedelta(seconds=30))
    crashing = pod("nightly-4-x", "", ready=False, waiting="CrashLoopBackOff", owner="nightly-4")
    result = assess(Baseline.of(CRON, cronjob()), cronjob(), [running], [crashing], NOW, {})
    assert result.health is Health.FAILING
