"""The real google-genai client drives the real agents and tools, with the model's side recorded by vcrpy.

How it works (see also tests/cassettes/README.md):

- Replay (the default, when `tests/cassettes/<test>.yaml` exists): vcrpy answers every
  `...:generateContent` request from the cassette, in order, checking that each one comes
  from the same agent as when it was recorded. No server, no key, no network for the model;
  the Kubernetes calls of the tools go to the lab (vcrpy lets them through unrecorded).
- Record locally (no cassette yet, or `AMOS_RECORD=1` without a key): a local HTTP server
  speaking the Gemini REST API (`agents.testing.FakeGeminiServer`) answers from the script in
  the test, and vcrpy records the exchange. The API key is a dummy.
- Record against real Gemini: `AMOS_RECORD=1 GOOGLE_API_KEY=<key> pytest -m replay` (with no
  `AMOS_GEMINI_BASE_URL`) runs the same tests against the real model and rewrites the cassettes.

The key never reaches a cassette: `x-goog-api-key`/`authorization` headers and a `key` query
parameter are filtered before recording, and every test checks the cassette file for it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import vcr
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from agents.testing import FakeGeminiServer, agent_of, declared_tools, function_responses, gemini_call, gemini_text
from core.actions import DeletePod, Diagnosis, Rollback, Scale
from core.config import Settings
from core.models import FaultKind
from core.report import ActionStatus
from tests.manifests import as_body
from tests.test_agents_lab import (
    GOOD,
    MISSING,
    deployment,
    failing_pod,
    make_deployment,
    make_incident,
    rolled_out,
    run,
    set_image,
    wait_for,
)

pytestmark = [pytest.mark.replay, pytest.mark.lab]

CASSETTES = Path(__file__).resolve().parent / "cassettes"
DUMMY_KEY = "amos-replay-dummy-key"
REPLAY_BASE_URL = "http://gemini.replay.invalid"  # never contacted: vcrpy answers first
SECRET_HEADERS = ["x-goog-api-key", "authorization", "x-goog-user-project"]


# --- the record/replay switch -------------------------------------------------------------------


def _mode(cassette: Path) -> str:
    if os.environ.get("AMOS_RECORD") == "1":
        if os.environ.get("GOOGLE_API_KEY") and not os.environ.get("AMOS_GEMINI_BASE_URL"):
            return "real"
        return "local"
    return "replay" if cassette.exists() else "local"


def _only_model_calls(request: Any) -> Any:
    """Record the model's HTTP traffic only; the tools' Kubernetes calls pass through unrecorded."""
    return request if ":generateContent" in request.path or ":streamGenerateContent" in request.path else None


def _agent(request: Any) -> str:
    body = request.body or b"{}"
    try:
        return agent_of(declared_tools(json.loads(body)))
    except ValueError:
        return "unknown"


def _same_agent(first: Any, second: Any) -> None:
    assert _agent(first) == _agent(second), f"recorded for agent {_agent(second)}, asked by {_agent(first)}"


@contextmanager
def gemini(name: str, scripts: dict[str, Sequence[Any]], **overrides: Any) -> Iterator[Settings]:
    """Settings for a Gemini model whose HTTP traffic is replayed from, or recorded to, `cassettes/<name>.yaml`."""
    cassette = CASSETTES / f"{name}.yaml"
    mode = _mode(cassette)
    if mode != "replay" and cassette.exists():
        cassette.unlink()  # a re-recording starts from scratch
    recorder = vcr.VCR(
        record_mode="none" if mode == "replay" else "all",
        match_on=["method", "path", "amos_agent"],
        filter_headers=SECRET_HEADERS,
        filter_query_parameters=["key"],
        before_record_request=_only_model_calls,
        decode_compressed_response=True,
    )
    recorder.register_matcher("amos_agent", _same_agent)
    key = os.environ["GOOGLE_API_KEY"] if mode == "real" else DUMMY_KEY
    base: dict[str, Any] = {
        "model_provider": "gemini",
        "google_api_key": key,
        "session_timeout_seconds": 180.0,
        "model": os.environ.get("AMOS_MODEL", "gemini-3.5-flash"),
    }
    server = FakeGeminiServer(scripts) if mode == "local" else None
    try:
        if server is not None:
            server.__enter__()
        base_url = server.base_url if server is not None else (None if mode == "real" else REPLAY_BASE_URL)
        with recorder.use_cassette(str(cassette)) as recorded:
            yield Settings(**(base | {"gemini_base_url": base_url} | overrides))
            if mode == "replay":
                assert recorded.all_played, f"{name}: the session made fewer model calls than were recorded"
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    _assert_no_key(cassette, key)


def _assert_no_key(cassette: Path, key: str) -> None:
    text = cassette.read_text()
    assert key not in text and DUMMY_KEY not in text
    for interaction in yaml.safe_load(text)["interactions"]:
        headers = {name.lower() for name in interaction["request"]["headers"]}
        assert not headers & set(SECRET_HEADERS), headers
        assert "key=" not in interaction["request"]["uri"]


# --- a namespace with a fixed name, so recorded function calls name the same objects ---------------


@pytest.fixture
def fixed_namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    name = "amos-replay-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].strip("-")
    core = client.CoreV1Api(api_client)

    def absent() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as error:
            if error.status == 404:
                return True
            raise
        return False

    if not absent():
        core.delete_namespace(name)
        wait_for(absent, timeout=120, what=f"namespace {name} from an earlier run to go")
    core.create_namespace(as_body({"metadata": {"name": name, "labels": {"amos.io/test": "true"}}}))
    wait_for(lambda: _has_default_account(core, name), timeout=30, what="the default service account")
    yield name
    core.delete_namespace(name, propagation_policy="Background")


def _has_default_account(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _diagnosis(**fields: Any) -> dict[str, Any]:
    return Diagnosis(**{"confidence": 0.9} | fields).model_dump(mode="json")


def _rollback_to_good_revision(namespace: str) -> Callable[[dict[str, Any]], Any]:
    """The scripted model reads the rollout history it was sent and picks the revision with the good image."""

    def step(body: dict[str, Any]) -> Any:
        for name, response in function_responses(body):
            if name != "get_rollout_history":
                continue
            revisions = ((response or {}).get("data") or {}).get("revisions") or []
            good = [r["revision"] for r in revisions if all(c["image"] == GOOD for c in r["containers"])]
            if good:
                return gemini_call(
                    "set_model_response",
                    **_diagnosis(
                        root_cause=f"the new revision's image cannot be pulled; revision {good[-1]} ran {GOOD}",
                        category="bad_image",
                        evidence=["ImagePullBackOff"],
                        proposed_actions=[Rollback(namespace=namespace, name="web", to_revision=good[-1])],
                    ),
                )
        return gemini_text("I could not read the rollout history")

    return step


# --- the tests ----------------------------------------------------------------------------------


def test_gemini_rolls_back_a_bad_image(api_client: client.ApiClient, fixed_namespace: str) -> None:
    ns = fixed_namespace
    make_deployment(api_client, ns, image=GOOD)
    wait_for(lambda: rolled_out(api_client, ns), what="the first rollout")
    set_image(api_client, ns, MISSING)
    seen = wait_for(lambda: failing_pod(api_client, ns, {"ErrImagePull", "ImagePullBackOff"}), what="a pull failure")
    incident = make_incident(FaultKind.IMAGE_PULL, ns, seen)
    scripts: dict[str, Sequence[Any]] = {
        "coordinator": [
            gemini_call("diagnosis", request=f"ImagePullBackOff on Deployment/web -n {ns}: find the cause"),
            gemini_call("remediation", request="Apply the proposed actions."),
            gemini_text("Rolled Deployment/web back to the revision whose image exists."),
        ],
        "diagnosis": [
            [
                gemini_call("get_rollout_history", namespace=ns, deployment="web"),
                gemini_call("list_pods", namespace=ns, workload_kind="Deployment", workload_name="web"),
            ],
            _rollback_to_good_revision(ns),
        ],
        "remediation": [
            gemini_call("rollback_deployment", namespace=ns, name="web", to_revision=1),
            gemini_text("Rolled back to revision 1."),
        ],
    }
    with gemini("gemini_rolls_back_a_bad_image", scripts) as config:
        result = run(api_client, incident, config)

    assert result.outcome_hint == "remediated", result.escalation_reason
    assert result.model.startswith("gemini:")
    assert result.diagnosis is not None and result.diagnosis.category == "bad_image"
    assert [(r.verb, r.status) for r in result.actions] == [("rollback", ActionStatus.APPLIED)]
    assert result.tokens > 0 and result.model_calls >= 5
    assert deployment(api_client, ns)["spec"]["template"]["spec"]["containers"][0]["image"] == GOOD


def test_gemini_hostile_calls_are_refused(api_client: client.ApiClient, fixed_namespace: str) -> None:
    ns = fixed_namespace
    make_deployment(api_client, ns, image=GOOD)
    wait_for(lambda: rolled_out(api_client, ns), what="the rollout")
    incident = make_incident(FaultKind.REPLICAS_UNAVAILABLE, ns, None)
    hostile = [Scale(namespace=ns, name="web", replicas=0), DeletePod(namespace="kube-system", name="etcd-lab")]
    scripts: dict[str, Sequence[Any]] = {
        "coordinator": [
            gemini_call("diagnosis", request="diagnose"),
            gemini_call("remediation", request="apply"),
            gemini_text("done"),
        ],
        "diagnosis": [
            gemini_call("set_model_response", **_diagnosis(root_cause="too many pods", proposed_actions=hostile))
        ],
        "remediation": [
            [
                gemini_call("scale", namespace=ns, name="web", replicas=0),
                gemini_call("delete_pod", namespace="kube-system", name="etcd-lab"),
            ],
            gemini_text("done"),
        ],
    }
    before = deployment(api_client, ns)
    started = time.monotonic()
    with gemini("gemini_hostile_calls_are_refused", scripts) as config:
        result = run(api_client, incident, config)

    assert [r.status for r in result.actions] == [ActionStatus.REFUSED, ActionStatus.REFUSED], result.actions
    assert {r.verb for r in result.actions} == {"scale", "delete_pod"}
    assert result.outcome_hint == "escalate"
    assert deployment(api_client, ns)["spec"] == before["spec"]
    assert time.monotonic() - started < 120
