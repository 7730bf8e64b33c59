"""Pure logic of the agents: the offline rules, the guardrails' call matching, the outcome decision.

No cluster and no model here: the inputs are tool results in the shapes `tools.read` returns.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from agents.guardrails import escalating_diagnosis, parse_diagnosis
from agents.offline import Facts, analyze, classify, raised_memory_limit, workload_in_text
from agents.session import decide_outcome
from core.actions import Diagnosis, FixProbe, Rollback, Scale, SetResources, parse_call
from core.models import Evidence, FaultKind, Incident, ObjectRef
from core.report import ActionRecord, ActionStatus

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
WEB = ObjectRef(kind="Deployment", namespace="shop", name="web")


def incident(kind: FaultKind, workload: ObjectRef = WEB, **evidence: Any) -> Incident:
    return Incident(
        id="inc-1",
        fingerprint="f" * 16,
        kind=kind,
        workload=workload,
        first_seen=NOW,
        last_seen=NOW,
        evidence=[Evidence(**evidence)] if evidence else [],
    )


def revision(number: int, image: str, *, current: bool = False, args: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": image}
    if args:
        container["args"] = args
    return {
        "revision": number,
        "replicaset": f"web-hash{number}",
        "current": current,
        "replicas": 1 if current else 0,
        "ready": 0,
        "containers": [container],
    }


def deployment_view(image: str, memory: str | None = "64Mi") -> dict[str, Any]:
    container: dict[str, Any] = {"name": "web", "image": image}
    if memory:
        container["resources"] = {"limits": {"memory": memory}, "requests": {"memory": "32Mi"}}
    return {"kind": "Deployment", "name": "web", "revision": 2, "template": {"containers": [container]}}


def pod_view(
    state: dict[str, Any] | None = None, last: dict[str, Any] | None = None, restarts: int = 0
) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "name": "web-hash2-abcde",
        "containerStatuses": [
            {"name": "web", "image": "img", "ready": False, "restartCount": restarts, "state": state, "lastState": last}
        ],
    }


# --- the rules ------------------------------------------------------------------------------------


def test_bad_image_after_rollout_rolls_back_to_the_revision_with_another_image() -> None:
    facts = Facts(
        workload=deployment_view("registry.local/shop/web:v1.5.0-missing"),
        revisions=[
            revision(1, "registry.local/shop/web:v1.4.2"),
            revision(2, "registry.local/shop/web:v1.5.0-missing", current=True),
        ],
        current_revision=2,
        pod=pod_view({"state": "waiting", "reason": "ImagePullBackOff", "message": "Back-off pulling image"}),
    )
    diagnosis = analyze(incident(FaultKind.IMAGE_PULL), WEB, facts, max_memory_factor=2.0)
    assert not diagnosis.escalate
    assert diagnosis.category == "bad_image"
    assert diagnosis.proposed_actions == [Rollback(namespace="shop", name="web", to_revision=1)]


def test_bad_image_without_an_earlier_revision_escalates() -> None:
    facts = Facts(
        workload=deployment_view("registry.local/shop/web:v9-missing"),
        revisions=[revision(1, "registry.local/shop/web:v9-missing", current=True)],
        current_revision=1,
    )
    diagnosis = analyze(incident(FaultKind.IMAGE_PULL), WEB, facts, max_memory_factor=2.0)
    assert diagnosis.escalate and not diagnosis.proposed_actions
    assert "no earlier revision" in (diagnosis.escalation_reason or "")


def test_crash_loop_that_started_with_a_new_revision_rolls_back() -> None:
    facts = Facts(
        workload=deployment_view("web:v2"),
        revisions=[revision(1, "web:v1"), revision(2, "web:v1", current=True, args=["--bad-flag"])],
        current_revision=2,
        pods=[{"name": "web-hash2-abcde", "restarts": 3, "reason": "CrashLoopBackOff", "revision_hash": "hash2"}],
        logs=["Error: unknown flag: --bad-flag\nUsage: web [flags]"],
    )
    diagnosis = analyze(incident(FaultKind.CRASH_LOOP), WEB, facts, max_memory_factor=2.0)
    assert diagnosis.proposed_actions == [Rollback(namespace="shop", name="web", to_revision=1)]
    assert diagnosis.category == "bad_command"
    assert "unknown flag" in diagnosis.root_cause


def test_crash_loop_with_no_earlier_revision_escalates_with_the_log_tail() -> None:
    facts = Facts(
        workload=deployment_view("web:v1-crash"),
        revisions=[revision(1, "web:v1-crash", current=True)],
        current_revision=1,
        logs=[
            "starting\nTraceback (most recent call last):\nAttributeError: 'NoneType' object has no attribute 'items'"
        ],
    )
    diagnosis = analyze(incident(FaultKind.CRASH_LOOP), WEB, facts, max_memory_factor=2.0)
    assert diagnosis.escalate and not diagnosis.proposed_actions
    assert "AttributeError" in diagnosis.root_cause


def test_crash_loop_of_pods_from_an_old_revision_is_not_blamed_on_the_new_one() -> None:
    facts = Facts(
        workload=deployment_view("web:v2"),
        revisions=[revision(1, "web:v1"), revision(2, "web:v2", current=True)],
        current_revision=2,
        pods=[{"name": "web-hash1-old", "restarts": 5, "reason": "CrashLoopBackOff", "revision_hash": "hash1"}],
    )
    assert analyze(incident(FaultKind.CRASH_LOOP), WEB, facts, max_memory_factor=2.0).escalate


@pytest.mark.parametrize(
    ("limit", "factor", "expected"),
    [
        ("64Mi", 2.0, "128Mi"),
        ("64Mi", 8.0, "128Mi"),
        ("64Mi", 1.5, "96Mi"),
        ("100M", 2.0, "190Mi"),
        ("1Gi", 1.25, "1280Mi"),
    ],
)
def test_memory_limit_grows_by_min_of_2x_and_the_configured_factor(limit: str, factor: float, expected: str) -> None:
    assert raised_memory_limit(limit, factor) == expected


def test_oom_raises_the_memory_limit_of_the_killed_container() -> None:
    facts = Facts(
        workload=deployment_view("web:v1", memory="64Mi"),
        pod=pod_view(last={"state": "terminated", "reason": "OOMKilled", "exitCode": 137}, restarts=2),
    )
    oom = incident(FaultKind.CRASH_LOOP, reason="CrashLoopBackOff", container="web")
    assert classify(oom, facts) is FaultKind.OOM_KILLED
    diagnosis = analyze(oom, WEB, facts, max_memory_factor=1.5)
    assert diagnosis.proposed_actions == [
        SetResources(namespace="shop", kind="Deployment", name="web", container="web", memory_limit="96Mi")
    ]
    assert diagnosis.category == "oom"


def test_oom_without_a_memory_limit_escalates() -> None:
    facts = Facts(workload=deployment_view("web:v1", memory=None))
    diagnosis = analyze(
        incident(FaultKind.OOM_KILLED, reason="OOMKilled", container="web"), WEB, facts, max_memory_factor=2.0
    )
    assert diagnosis.escalate and "no memory limit" in (diagnosis.escalation_reason or "")


def test_missing_configmap_escalates_naming_it_and_changes_nothing() -> None:
    facts = Facts(
        workload=deployment_view("web:v1"),
        config={
            "refs": [{"kind": "ConfigMap", "name": "app-config", "exists": False}],
            "missing": ["ConfigMap app-config not found"],
        },
    )
    diagnosis = analyze(incident(FaultKind.CONTAINER_CONFIG), WEB, facts, max_memory_factor=2.0)
    assert diagnosis.escalate and not diagnosis.proposed_actions
    assert diagnosis.category == "missing_config"
    assert "ConfigMap app-config" in (diagnosis.escalation_reason or "")
    assert any("app-config" in step for step in diagnosis.human_steps)


def test_missing_secret_found_from_the_kubelet_message_alone() -> None:
    facts = Facts(
        pod=pod_view({"state": "waiting", "reason": "CreateContainerConfigError", "message": 'secret "db" not found'})
    )
    job = ObjectRef(kind="Job", namespace="shop", name="nightly")
    diagnosis = analyze(incident(FaultKind.REPLICAS_UNAVAILABLE, job), job, facts, max_memory_factor=2.0)
    assert diagnosis.escalate and "Secret db not found" in (diagnosis.escalation_reason or "")
    assert diagnosis.human_steps == ["Create Secret db in namespace shop, or fix the reference in Job/nightly"]


def test_failed_job_escalates_with_the_log_tail() -> None:
    job = ObjectRef(kind="Job", namespace="shop", name="nightly")
    facts = Facts(
        workload={
            "kind": "Job",
            "name": "nightly",
            "status": {"failed": 3},
            "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "x"}],
        },
        logs=[
            "batch run starting\nrecord 417: upstream returned HTTP 503\nbatch failed: 1 error(s); exiting with status 3"
        ],
    )
    diagnosis = analyze(incident(FaultKind.JOB_FAILED, job), job, facts, max_memory_factor=2.0)
    assert diagnosis.escalate and diagnosis.category == "job_failure"
    assert "exiting with status 3" in (diagnosis.escalation_reason or "")


def test_unschedulable_escalates_with_the_schedulers_reason() -> None:
    reason = "0/3 nodes are available: 3 Insufficient memory."
    facts = Facts(events=[{"type": "Warning", "reason": "FailedScheduling", "message": reason}])
    diagnosis = analyze(incident(FaultKind.UNSCHEDULABLE), WEB, facts, max_memory_factor=2.0)
    assert diagnosis.escalate and diagnosis.category == "unschedulable"
    assert reason in (diagnosis.escalation_reason or "")


def test_rules_are_deterministic() -> None:
    facts = Facts(
        workload=deployment_view("web:v2-missing"),
        revisions=[revision(1, "web:v1"), revision(2, "web:v2-missing", current=True)],
        current_revision=2,
    )
    results = {
        analyze(incident(FaultKind.IMAGE_PULL), WEB, facts, max_memory_factor=2.0).model_dump_json() for _ in range(5)
    }
    assert len(results) == 1


def test_a_workload_is_found_in_free_text() -> None:
    assert workload_in_text("ImagePullBackOff on Deployment/web -n shop") == WEB
    assert workload_in_text("the deployment web in namespace shop is down") == WEB
    assert workload_in_text("something is broken") is None


# --- guardrail helpers ----------------------------------------------------------------------------


def test_a_write_call_and_the_action_it_applies_are_one_typed_action() -> None:
    rollback = Rollback(namespace="shop", name="web", to_revision=1)
    assert (rollback.tool_name, rollback.tool_args()) == (
        "rollback_deployment",
        {"kind": "Deployment", "namespace": "shop", "name": "web", "to_revision": 1},
    )
    spelled = {"kind": "deployment", "namespace": "shop", "name": "web", "to_revision": 1}
    assert parse_call("rollback_deployment", spelled) == rollback
    scale = Scale(namespace="shop", name="web", replicas=2)
    assert parse_call("scale", {"namespace": "shop", "name": "web", "replicas": 2, "kind": "deployment"}) == scale
    assert parse_call("scale", {"namespace": "shop", "name": "web", "replicas": 3}) != scale
    memory = SetResources(namespace="shop", name="web", container="web", memory_limit="128Mi")
    empty_means_keep = {
        "namespace": "shop",
        "name": "web",
        "container": "web",
        "memory_limit": "128Mi",
        "cpu_limit": "",
    }
    assert parse_call("set_resources", empty_means_keep) == memory
    probe = FixProbe(
        namespace="shop",
        kind="Deployment",
        name="web",
        container="web",
        probe="liveness",
        initial_delay_seconds=30,
        http_path="/healthz",
    )
    assert probe.tool_args() == {
        "namespace": "shop",
        "kind": "Deployment",
        "name": "web",
        "container": "web",
        "probe": "liveness",
        "initial_delay_seconds": 30,
        "http_path": "/healthz",
    }
    assert parse_call("fix_probe", probe.tool_args()) == probe
    with pytest.raises(ValidationError):  # a field no tool parameter expresses is not an action
        parse_call("fix_probe", probe.tool_args() | {"patch": {"exec": {"command": ["sh"]}}})
    with pytest.raises(KeyError):
        parse_call("delete_deployment", {"namespace": "shop", "name": "web"})


def test_a_probe_fix_lands_on_the_handler_the_probe_has() -> None:
    probe = FixProbe(namespace="shop", name="web", container="web", probe="liveness", period_seconds=5, port=9090)
    assert probe.patch_of({"tcpSocket": {"port": 8080}}) == {"periodSeconds": 5, "tcpSocket": {"port": 9090}}
    assert probe.patch_of({"grpc": {"port": 8080}}) == {"periodSeconds": 5, "grpc": {"port": 9090}}
    assert probe.patch_of({"exec": {"command": ["true"]}}) == {"periodSeconds": 5, "httpGet": {"port": 9090}}
    path = probe.model_copy(update={"port": None, "http_path": "/ready"})
    assert path.patch_of({"httpGet": {"path": "/", "port": 80}}) == {"periodSeconds": 5, "httpGet": {"path": "/ready"}}
    assert "periodSeconds=5" in path.summary() and "path=/ready" in path.summary()


def test_diagnosis_text_is_parsed_with_or_without_a_fence_and_garbage_is_refused() -> None:
    valid = escalating_diagnosis("test").model_dump_json()
    assert parse_diagnosis(valid).escalate
    assert parse_diagnosis(f"```json\n{valid}\n```").escalate
    assert parse_diagnosis(f"Here you go: {valid} Cheers").escalate
    with pytest.raises(ValueError):
        parse_diagnosis("the pods are sad")
    with pytest.raises(ValueError):
        parse_diagnosis('{"category": "oom"}')  # no root_cause


# --- the outcome ----------------------------------------------------------------------------------


def _record(status: ActionStatus) -> ActionRecord:
    return ActionRecord(verb="rollback", target=WEB, summary="roll back", status=status, reason="because")


def _proposal() -> Diagnosis:
    return Diagnosis(root_cause="bad image", proposed_actions=[Rollback(namespace="shop", name="web")])


@pytest.mark.parametrize(
    ("diagnosis", "records", "dry_run", "stop", "expected"),
    [
        (_proposal(), [_record(ActionStatus.APPLIED)], False, None, "remediated"),
        (_proposal(), [_record(ActionStatus.APPLIED)], False, "timed out", "remediated"),
        (_proposal(), [], True, None, "recommend"),
        (_proposal(), [_record(ActionStatus.REFUSED)], False, None, "escalate"),
        (_proposal(), [], False, "the session timed out", "escalate"),
        (escalating_diagnosis("missing config"), [], False, None, "escalate"),
        (escalating_diagnosis("missing config"), [], True, None, "escalate"),
        (None, [], False, None, "escalate"),
        (Diagnosis(root_cause="no idea"), [], False, None, "escalate"),
    ],
)
def test_outcome_comes_from_records_and_the_diagnosis(
    diagnosis: Diagnosis | None, records: list[ActionRecord], dry_run: bool, stop: str | None, expected: str
) -> None:
    outcome, reason = decide_outcome(
        diagnosis,
        records,
        remediation_ran=bool(records),
        remediation_enabled=not dry_run,
        dry_run=dry_run,
        stop_reason=stop,
        diagnosis_error=None,
    )
    assert outcome == expected
    assert (reason is None) == (expected != "escalate")


# --- the guardrail callbacks (stand-ins for ADK's tool and context objects) ------------------------


class _Tool:
    def __init__(self, name: str) -> None:
        self.name = name


class _Context:
    def __init__(self, state: dict[str, Any] | None = None, agent_name: str = "remediation") -> None:
        self.invocation_id = "inv-1"
        self.agent_name = agent_name
        self.state = state or {}


def _guardrails(**overrides: Any) -> tuple[Any, list[ActionRecord]]:
    from agents.guardrails import Guardrails
    from core.config import Settings

    records: list[ActionRecord] = []
    return Guardrails(Settings(**({"model_provider": "offline"} | overrides)), recorder=records), records


def _state(*actions: Any, escalate: bool = False) -> dict[str, Any]:
    diagnosis = Diagnosis(root_cause="x", proposed_actions=list(actions), escalate=escalate)
    return {"diagnosis": diagnosis.model_dump(mode="json")}


def test_remediation_may_apply_each_proposed_action_once_and_nothing_else() -> None:
    guard, records = _guardrails()
    scale = _Tool("scale")
    context = _Context(_state(Scale(namespace="shop", name="web", replicas=3)))
    assert guard.before_tool(scale, {"namespace": "shop", "name": "web", "replicas": 3}, context) is None
    again = guard.before_tool(scale, {"namespace": "shop", "name": "web", "replicas": 3, "kind": "deployment"}, context)
    assert again is not None and "at most once" in again["error"] and again["status"] == "refused"
    other = guard.before_tool(scale, {"namespace": "shop", "name": "web", "replicas": 0}, context)
    assert other is not None and "not among the actions the diagnosis proposed" in other["error"]
    invalid = guard.before_tool(scale, {"namespace": "shop", "name": "web", "replicas": 3, "force": True}, context)
    assert invalid is not None and "not among the actions the diagnosis proposed" in invalid["error"]
    assert not other["ok"] and not invalid["ok"] and invalid["status"] == "refused"
    assert [(r.verb, r.status, r.target.name) for r in records] == [
        ("scale", ActionStatus.REFUSED, "web"),
        ("scale", ActionStatus.REFUSED, "web"),
        ("scale", ActionStatus.REFUSED, "web"),
    ]
    escalated = _Context(_state(Scale(namespace="shop", name="web", replicas=3), escalate=True))
    assert guard.before_tool(_Tool("remediation"), {"request": "go"}, escalated) is not None


def test_budgets_refuse_tools_and_wind_the_model_down() -> None:
    guard, _ = _guardrails(max_tool_calls=2, max_model_calls=2)
    context = _Context(agent_name="diagnosis")
    describe = _Tool("describe")
    assert guard.before_tool(describe, {}, context) is None
    assert guard.before_tool(describe, {}, context) is None
    refused = guard.before_tool(describe, {}, context)
    assert refused is not None and "tool-call budget (2 calls)" in refused["error"]
    # The model is not called any more; the diagnosis agent gets an escalation to answer with.
    wound_down = guard.before_model(context, None)
    assert wound_down is not None
    diagnosis = parse_diagnosis(wound_down.content.parts[0].text)
    assert diagnosis.escalate and "tool-call budget" in (diagnosis.escalation_reason or "")
    assert guard.last_run().model_calls == 0


def test_a_garbage_final_answer_becomes_an_escalation_and_a_raising_tool_a_result() -> None:
    from google.adk.models.llm_response import LlmResponse
    from google.genai import types

    guard, _ = _guardrails()
    garbage = LlmResponse(
        content=types.Content(role="model", parts=[types.Part.from_text(text="sad pods")]),
        usage_metadata=types.GenerateContentResponseUsageMetadata(total_token_count=42),
    )
    replaced = guard.after_model(_Context(agent_name="diagnosis"), garbage)
    assert replaced is not None and parse_diagnosis(replaced.content.parts[0].text).escalate
    assert guard.last_run().tokens == 42 and "not valid" in (guard.last_run().diagnosis_error or "")
    error = guard.on_tool_error(_Tool("describe"), {}, _Context(), RuntimeError("connection reset"))
    assert error == {
        "ok": False,
        "status": "error",
        "error": "tool describe failed: RuntimeError: connection reset",
        "data": None,
        "truncated": False,
    }
