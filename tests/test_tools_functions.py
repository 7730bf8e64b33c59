"""The tools without a cluster: ADK declarations, never-raise envelopes, diffs and object reading."""

from __future__ import annotations

import inspect
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from google.adk.tools.function_tool import FunctionTool
from kubernetes import client

from core import k8s
from core.actions import ACTION_MODELS, TOOL_ACTIONS
from core.config import Settings
from core.redaction import Redactor
from core.report import ActionStatus
from tools import objects
from tools.cluster import ClusterAccess
from tools.diff import spec_diff, template_changes
from tools.policy import IncidentScope, PolicyGuard
from tools.read import ReadTools, _Clip
from tools.results import ToolResult, ToolStatus
from tools.write import WriteTools

SIMPLE_TYPES = {"string", "integer", "boolean", "array", "null"}


@pytest.fixture
def offline_access() -> ClusterAccess:
    """An API client pointed at a closed port: every call fails fast, which is what these tests need."""
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:9"
    configuration.retries = False
    return ClusterAccess(client.ApiClient(configuration), Settings(), Redactor(["hunter2-secret"]))


@pytest.fixture
def read_tools(offline_access: ClusterAccess) -> ReadTools:
    return ReadTools(offline_access)


@pytest.fixture
def write_tools(offline_access: ClusterAccess) -> WriteTools:
    scope = IncidentScope(namespace="shop", kind="Deployment", name="web")
    return WriteTools(offline_access, PolicyGuard(offline_access.settings, scope))


def _all_functions(read_tools: ReadTools, write_tools: WriteTools) -> list[Any]:
    return [*read_tools.as_functions(), *write_tools.as_functions()]


def test_adk_builds_a_declaration_for_every_tool(read_tools: ReadTools, write_tools: WriteTools) -> None:
    names: set[str] = set()
    writes = {function.__name__ for function in write_tools.as_functions()}
    for function in _all_functions(read_tools, write_tools):
        declaration = FunctionTool(function)._get_declaration()
        assert declaration is not None and declaration.name == function.__name__
        names.add(function.__name__)  # the declaration's name, as just asserted
        assert declaration.description and "Returns:" in declaration.description
        schema = declaration.parameters_json_schema
        assert isinstance(schema, dict)
        assert "namespace" in schema["required"]
        for name, prop in schema["properties"].items():
            kinds = {item["type"] for item in prop.get("anyOf", [prop])}
            assert kinds <= SIMPLE_TYPES, (function.__name__, name, prop)
            if function.__name__ in writes:  # described in the schema, from the action model's field
                assert prop.get("description"), f"{function.__name__}: parameter {name} is not documented"
            else:
                assert "Args:" in declaration.description
                assert name in declaration.description, f"{function.__name__}: parameter {name} is not documented"
        assert inspect.signature(function).return_annotation in (dict[str, Any], "dict[str, Any]")
    assert "delete_deployment" not in names and not any(
        name.startswith("delete_") and name != "delete_pod" for name in names
    )


# The write tools and parameters the recorded model sessions (tests/cassettes) call: they must stay.
RECORDED_WRITE_TOOLS = {
    "rollback_deployment": {"namespace", "name", "to_revision", "kind"},
    "set_image": {"namespace", "name", "container", "image", "kind"},
    "set_resources": {"namespace", "kind", "name", "container", "memory_limit", "memory_request", "cpu_limit"}
    | {"cpu_request"},
    "set_env": {"namespace", "kind", "name", "container", "env_name", "value"},
    "set_args": {"namespace", "kind", "name", "container", "command", "args"},
    "fix_probe": {"namespace", "kind", "name", "container", "probe", "initial_delay_seconds", "period_seconds"}
    | {"timeout_seconds", "failure_threshold", "http_path", "port"},
    "scale": {"namespace", "name", "replicas", "kind"},
    "delete_pod": {"namespace", "name"},
    "restart_rollout": {"namespace", "name", "kind"},
}


def test_each_action_model_is_exactly_one_write_tool_whose_parameters_are_its_fields(write_tools: WriteTools) -> None:
    functions = write_tools.as_functions()
    assert len(functions) == len(ACTION_MODELS) == len({model.tool_name for model in ACTION_MODELS})
    assert sorted(function.__name__ for function in functions) == sorted(TOOL_ACTIONS) == sorted(RECORDED_WRITE_TOOLS)
    for function in functions:
        model = TOOL_ACTIONS[function.__name__]
        declaration = FunctionTool(function)._get_declaration()
        assert declaration is not None and declaration.parameters_json_schema is not None
        declared = declaration.parameters_json_schema
        schema = model.model_json_schema()
        fields = {name: prop for name, prop in schema["properties"].items() if name != "action"}
        assert declared["properties"] == fields, function.__name__  # names, types, defaults, descriptions
        assert declared["required"] == schema["required"], function.__name__
        assert set(inspect.signature(function).parameters) == set(model.model_fields) - {"action"}
        assert RECORDED_WRITE_TOOLS[function.__name__] <= set(fields), function.__name__
        assert model.__doc__ and declaration.description
        assert declaration.description.startswith(inspect.cleandoc(model.__doc__))


def test_a_tool_result_status_and_ok_agree() -> None:
    assert {status: ToolResult(status=status).ok for status in ToolStatus} == {
        ToolStatus.OK: True,
        ToolStatus.NO_DATA: True,
        ToolStatus.REFUSED: False,
        ToolStatus.CONFLICT: False,
        ToolStatus.ERROR: False,
    }
    refused = ToolResult.refused("namespace kube-system is excluded").model_dump()
    assert refused["status"] == "refused" and refused["ok"] is False
    assert refused["error"] == "refused by policy: namespace kube-system is excluded"


def test_tools_never_raise_and_name_the_failed_call(read_tools: ReadTools, write_tools: WriteTools) -> None:
    result = read_tools.get_pod_logs("shop", "web-1")
    assert result["ok"] is False and result["error"].startswith("read_namespaced_pod failed:")
    assert result["status"] == ToolStatus.ERROR
    result = read_tools.get_rollout_history("shop", "web")
    assert result["ok"] is False and result["error"].startswith("read_namespaced_deployment failed:")
    result = write_tools.call("scale", namespace="shop", name="web", replicas=3)
    assert result["ok"] is False and result["error"].startswith("read_namespaced_deployment failed:")
    assert result["status"] == ToolStatus.ERROR
    assert [record.status for record in write_tools.recorder] == [ActionStatus.FAILED]


def test_invalid_proposals_are_refused_and_recorded(write_tools: WriteTools) -> None:
    tools = {function.__name__: function for function in write_tools.as_functions()}
    result = tools["fix_probe"](namespace="shop", kind="Deployment", name="web", container="web", probe="exec")
    assert result["ok"] is False and result["error"].startswith("refused by policy: invalid action")
    assert result["status"] == ToolStatus.REFUSED
    result = tools["set_image"](namespace="shop", name="web", container="web", image="x:1", kind="Secret")
    assert result["ok"] is False and result["error"].startswith("refused by policy: invalid action")
    assert result["status"] == ToolStatus.REFUSED
    assert [record.status for record in write_tools.recorder] == [ActionStatus.REFUSED, ActionStatus.REFUSED]
    assert [record.verb for record in write_tools.recorder] == ["fix_probe", "set_image"]


def test_reads_stay_out_of_amos_namespace_and_outside_the_scope(offline_access: ClusterAccess) -> None:
    tools = ReadTools(offline_access, scope=IncidentScope(namespace="shop", kind="Deployment", name="web"))
    assert "AMOS's own namespace" in tools.describe("amos-system", "Pod", "x")["error"]
    assert "outside the incident's namespace" in tools.get_events("billing", "Pod", "x")["error"]


def _deployment(env: list[dict[str, Any]], image: str = "web:v1", memory: str = "128Mi") -> dict[str, Any]:
    container = {"name": "web", "image": image, "env": env, "resources": {"limits": {"memory": memory}}}
    return {"kind": "Deployment", "spec": {"replicas": 1, "template": {"spec": {"containers": [container]}}}}


def test_diff_shows_only_changed_fields_and_hides_secrets() -> None:
    redactor = Redactor(["hunter2-secret"])
    env = [{"name": "DB_HOST", "value": "db"}, {"name": "API_TOKEN", "value": "abc-123-xyz"}]
    before = _deployment(env)
    after = _deployment(
        [{"name": "DB_HOST", "value": "db2"}, {"name": "API_TOKEN", "value": "zzz-999"}], image="web:v0", memory="256Mi"
    )
    diff = spec_diff(before, after, redactor, label="Deployment/web")
    assert diff.splitlines()[:2] == ["--- Deployment/web (before)", "+++ Deployment/web (after)"]
    assert "-containers[web].image: web:v1" in diff and "+containers[web].image: web:v0" in diff
    assert "+containers[web].resources.limits.memory: 256Mi" in diff
    assert "+containers[web].env[DB_HOST].value: db2" in diff
    assert "abc-123-xyz" not in diff and "zzz-999" not in diff
    assert "replicas" not in diff
    assert spec_diff(before, before, redactor) == ""


def test_config_refs_and_selectors() -> None:
    pod = {
        "kind": "Pod",
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "env": [
                        {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}},
                        {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                    ],
                    "envFrom": [{"configMapRef": {"name": "extra", "optional": True}}],
                }
            ],
            "volumes": [
                {"name": "files", "configMap": {"name": "cfg", "items": [{"key": "b", "path": "b"}]}},
                {"name": "tls", "secret": {"secretName": "tls"}},
            ],
        },
    }
    refs = objects.config_refs(pod)
    assert refs[("ConfigMap", "cfg")]["keys"] == {"a", "b"}
    assert refs[("ConfigMap", "extra")]["optional"] is True
    assert refs[("Secret", "db")]["keys"] == {"password"}
    assert ("Secret", "tls") in refs
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
    }
    assert objects.label_selector(selector) == "app=web,tier in (a,b)"


def test_writes_are_serialized(write_tools: WriteTools, monkeypatch: pytest.MonkeyPatch) -> None:
    """ADK may run one turn's tool calls in parallel; the writes still happen one at a time."""
    inside, most = [0], [0]
    guard = threading.Lock()

    def slow_apply(action: Any) -> ToolResult:
        with guard:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.05)
        with guard:
            inside[0] -= 1
        return ToolResult.success()

    monkeypatch.setattr(write_tools, "_apply", slow_apply)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda n: write_tools.call("scale", namespace="shop", name="web", replicas=n), [1, 2, 3, 4])
        )
    assert all(result["ok"] for result in results) and most[0] == 1


def test_long_logs_keep_their_end() -> None:
    clip = _Clip()
    text = "\n".join(f"line {n}" for n in range(5000)) + "\nTraceback: the end"
    kept = clip.tail(text, 200)
    assert clip.truncated and len(kept) <= 201 and kept.endswith("Traceback: the end")
    assert kept.startswith("…line ")  # cut at a line boundary


def test_template_changes_name_what_a_revision_changed_without_env_values() -> None:
    before = {
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "web:1",
                    "env": [{"name": "DB", "value": "s3cr3t"}],
                    "resources": {"limits": {"memory": "64Mi"}},
                }
            ]
        }
    }
    after = {
        "spec": {
            "nodeSelector": {"disk": "ssd"},
            "initContainers": [{"name": "migrate", "image": "migrate:2"}],
            "containers": [
                {
                    "name": "web",
                    "image": "web:2",
                    "args": ["--fast"],
                    "env": [
                        {"name": "DB", "value": "other"},
                        {
                            "name": "URL",
                            "valueFrom": {"configMapKeyRef": {"name": "orders-config", "key": "database_url"}},
                        },
                    ],
                    "resources": {"limits": {"memory": "32Mi"}},
                    "livenessProbe": {
                        "httpGet": {
                            "path": "/h",
                            "port": 80,
                            "httpHeaders": [{"name": "Authorization", "value": "tok"}],
                        }
                    },
                }
            ],
        }
    }
    lines = template_changes(before, after)
    text = "\n".join(lines)
    assert "init container migrate added (image migrate:2)" in lines
    assert "image of container web: web:1 -> web:2" in lines
    assert 'args of container web: null -> ["--fast"]' in lines
    assert "env of container web: added URL; changed DB" in lines
    assert "references ConfigMap orders-config (keys database_url) (new)" in lines
    assert any(line.startswith("resources of container web:") and "32Mi" in line for line in lines)
    assert any(line.startswith("livenessProbe of container web:") for line in lines)
    assert any(line.startswith("nodeSelector:") for line in lines)
    assert "s3cr3t" not in text and "other" not in text and "tok" not in text
    assert template_changes(None, after) == [] and template_changes(after, after) == []


def test_pods_to_replace_are_the_failing_ones_off_the_current_revision() -> None:
    def revision(number: int, image: str) -> dict[str, Any]:
        template = {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": image}]}}
        return {
            "kind": "ControllerRevision",
            "revision": number,
            "metadata": {"name": f"db-h{number}"},
            "data": {"spec": {"template": template}},
        }

    def pod(name: str, revision_name: str, ready: bool) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": {k8s.CONTROLLER_REVISION_HASH_LABEL: revision_name}},
            "status": {"conditions": [{"type": "Ready", "status": str(ready)}]},
        }

    history = [revision(1, "db:1"), revision(2, "db:2-crash")]
    workload: dict[str, Any] = {
        "kind": "StatefulSet",
        "metadata": {"generation": 3},
        "spec": {"template": history[0]["data"]["spec"]["template"], "updateStrategy": {"type": "OnDelete"}},
        "status": {"observedGeneration": 3, "updateRevision": "db-h1"},
    }
    pods = [pod("db-0", "db-h1", True), pod("db-1", "db-h2", True), pod("db-2", "db-h2", False)]
    assert [p["metadata"]["name"] for p in objects.pods_to_replace(workload, history, pods)] == ["db-2"]
    daemonset = {
        **workload,
        "kind": "DaemonSet",
        "spec": {**workload["spec"], "updateStrategy": {"type": "RollingUpdate"}},
    }
    assert objects.pods_to_replace(daemonset, history, pods) == []  # its controller replaces them itself
    deployment = {**workload, "kind": "Deployment"}
    assert objects.pods_to_replace(deployment, history, pods) == []
