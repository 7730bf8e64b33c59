"""The first context of an incident for the new kinds and faults: a stand-in for the read tools, no cluster."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.context import build_context
from core.models import Evidence, FaultKind, Incident, ObjectRef

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def ok(data: Any) -> dict[str, Any]:
    return {"ok": True, "data": data, "truncated": False}


class Reads:
    """Canned results in the shapes `tools.read.ReadTools` returns; every call is kept in `calls`."""

    def __init__(self, pod: dict[str, Any], rollout: dict[str, Any] | None = None) -> None:
        self.pod, self.rollout = pod, rollout or {"revisions": []}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def describe(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        self.calls.append(("describe", {"kind": kind, "name": name}))
        if kind == "Pod":
            return ok(self.pod)
        if kind == "Job":
            return ok({"name": name, "status": {"failed": 2}, "conditions": [{"type": "Failed", "status": "True"}]})
        return ok({"kind": kind, "name": name, "template": {"containers": [{"name": "app", "image": "a:1"}]}})

    def list_pods(self, namespace: str, workload_kind: str, workload_name: str) -> dict[str, Any]:
        self.calls.append(("list_pods", {"kind": workload_kind}))
        return ok({"pods": [{"name": "web-1", "phase": "Pending", "reason": "Init:CrashLoopBackOff"}]})

    def get_events(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        self.calls.append(("get_events", {"kind": kind, "name": name}))
        return ok({"events": [{"type": "Warning", "reason": f"From{kind}", "message": f"about {kind}/{name}"}]})

    def get_rollout_history(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        self.calls.append(("get_rollout_history", {"kind": kind, "name": name}))
        return ok(self.rollout)

    def get_config_refs(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        return ok({"refs": [], "missing": []})

    def get_pod_logs(
        self, namespace: str, pod: str, container: str | None = None, previous: bool = False, tail_lines: int = 100
    ) -> dict[str, Any]:
        self.calls.append(("get_pod_logs", {"container": container, "previous": previous}))
        return ok({"container": container, "log": f"log of {container}"})


def incident(kind: FaultKind, workload: ObjectRef, affected: list[ObjectRef] | None = None) -> Incident:
    return Incident(
        id="i",
        fingerprint="f" * 16,
        kind=kind,
        workload=workload,
        first_seen=NOW,
        last_seen=NOW,
        affected=affected or [],
        evidence=[Evidence(reason=kind.value)],
    )


INIT_FAILING = {
    "name": "web-1",
    "phase": "Pending",
    "initContainerStatuses": [
        {
            "name": "migrate",
            "ready": False,
            "restartCount": 3,
            "state": {"state": "waiting", "reason": "CrashLoopBackOff"},
            "lastState": {"state": "terminated", "exitCode": 1},
        },
    ],
    "containerStatuses": [{"name": "app", "ready": False, "state": {"state": "waiting", "reason": "PodInitializing"}}],
}


def test_a_failing_init_container_is_the_one_whose_log_is_read() -> None:
    reads = Reads(INIT_FAILING)
    web = ObjectRef(kind="Deployment", namespace="shop", name="web")
    context = build_context(incident(FaultKind.INIT_CONTAINER, web), reads, [])
    logs = [args for name, args in reads.calls if name == "get_pod_logs"]
    assert logs[0] == {"container": "migrate", "previous": True}
    assert context.logs[0].text == "log of migrate"


def test_a_deployment_context_has_the_current_replicasets_events_and_the_history_marks() -> None:
    rollout = {
        "current_revision": 2,
        "revisions": [
            {"revision": 1, "replicaset": "web-a", "known": "known-good (recorded)", "containers": []},
            {"revision": 2, "replicaset": "web-b", "current": True, "known": "known-bad", "changed": ["image"]},
        ],
    }
    reads = Reads(INIT_FAILING, rollout)
    web = ObjectRef(kind="Deployment", namespace="shop", name="web")
    context = build_context(incident(FaultKind.FAILED_CREATE, web), reads, [])
    assert any("about ReplicaSet/web-b" in event for event in context.events)
    assert context.rollout_history[0]["known"] == "known-good (recorded)"
    assert context.rollout_history[1]["changed"] == ["image"]
    assert not [call for call in reads.calls if call[0] == "get_pod_logs"]  # FailedCreate: no pod to read


def test_a_statefulset_reads_its_history_by_kind_and_a_cronjob_its_failed_runs() -> None:
    reads = Reads(INIT_FAILING)
    db = ObjectRef(kind="StatefulSet", namespace="shop", name="db")
    build_context(incident(FaultKind.CRASH_LOOP, db), reads, [])
    assert ("get_rollout_history", {"kind": "StatefulSet", "name": "db"}) in reads.calls
    cron = ObjectRef(kind="CronJob", namespace="shop", name="report")
    runs = [ObjectRef(kind="Job", namespace="shop", name=f"report-{n}") for n in range(5)]
    context = build_context(incident(FaultKind.JOB_FAILED, cron, runs), Reads(INIT_FAILING), [])
    assert [job["name"] for job in context.failed_jobs] == ["report-2", "report-3", "report-4"]
