"""`adk web` with writes enabled, on the lab, through ADK's HTTP API: a fix made there is like any other (issue 14).

The app is the one `adk web agents` serves (agents/amos, offline diagnoser, no key) with
`AMOS_ADK_WEB_WRITES=true`. Asked to fix a bad rollout, it hands the diagnosis's rollback to the
orchestrator, which leaves what every fix leaves in the cluster: the ledger's count, a snapshot
Secret, a journal entry walked through its phases and closed, AMOS's Events on the workload and a
report mailed to a real SMTP server. A fix the policy refuses changes nothing.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from agents.app import build_root_agent
from agents.guardrails import SET_MODEL_RESPONSE
from agents.testing import ScriptedLlm, call, text
from core.actions import Category, Diagnosis, SetEnv
from core.config import Settings
from core.models import FaultKind, ObjectRef, fingerprint
from lab.workloads import deployment, rollout_complete
from orchestrator.snapshots import SnapshotStore
from orchestrator.state_api import PHASE_LABEL
from orchestrator.store import StateStore
from service.adk_fixes import OrchestratorFixes
from tests.mailbox import Inbox, body
from tests.test_adk_web import MODEL_KEYS, OneAgent, chat, http_app, summary
from tests.test_orchestrator_lab import MISSING, amos_events, create, image_of, read, set_image, wait_pods

pytestmark = pytest.mark.lab


def write_config(path: Path, settings: Settings) -> Path:
    """The settings a test chose, as the config.yaml `adk web` reads (AMOS_CONFIG); writes come from the environment."""
    chosen = settings.model_dump(mode="json", include=settings.model_fields_set - {"adk_web_writes"})
    path.write_text(yaml.safe_dump(chosen))
    return path


def serve_adk_web(monkeypatch: pytest.MonkeyPatch, lab: Any, config: Path, settings: Settings) -> None:
    """The environment `adk web agents` runs in: the lab's kubeconfig and `settings` (writes as they say)."""
    for name in MODEL_KEYS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AMOS_CONFIG", str(write_config(config, settings)))
    monkeypatch.setenv("KUBECONFIG", str(lab.kubeconfig))
    if settings.adk_web_writes:
        monkeypatch.setenv("AMOS_ADK_WEB_WRITES", "true")  # as a person enables it: the variable, not the file
    else:
        monkeypatch.delenv("AMOS_ADK_WEB_WRITES", raising=False)
    for name in [module for module in sys.modules if module == "amos" or module.startswith("amos.")]:
        monkeypatch.delitem(sys.modules, name)  # ADK imports the app fresh, with this environment


def close_served_app() -> None:
    """Stop the outbox threads of the app ADK loaded (agents/amos), if it made one."""
    served = sys.modules.get("amos.agent")
    if served is not None:
        served.fixes.close()


@pytest.fixture
def adk_web_writes(
    monkeypatch: pytest.MonkeyPatch, lab: Any, tmp_path: Path, make_settings: Callable[..., Settings]
) -> Iterator[Settings]:
    """`adk web agents` with `adk_web_writes: true`, scoped to the test's namespace and state namespace."""
    settings = make_settings(adk_web_writes=True)
    serve_adk_web(monkeypatch, lab, tmp_path / "config.yaml", settings)
    yield settings
    close_served_app()


class JournalPhases:
    """Every phase the journal ConfigMaps of the state namespace pass through, from a watch started before the fix."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.seen: dict[str, list[str | None]] = {}
        self.deleted: set[str] = set()
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        self._core = client.CoreV1Api(api_client)
        self._namespace = namespace
        listed = self._core.list_namespaced_config_map(namespace)
        assert listed.metadata is not None
        self._thread = threading.Thread(target=self._run, args=(listed.metadata.resource_version,), daemon=True)
        self._thread.start()

    def _run(self, resource_version: str | None) -> None:
        try:
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                self._core.list_namespaced_config_map,
                self._namespace,
                label_selector="amos.io/record=journal",
                resource_version=resource_version,
                timeout_seconds=300,
            ):
                item = event["object"]
                name = item.metadata.name
                if event["type"] == "DELETED":
                    self.deleted.add(name)
                else:
                    phases = self.seen.setdefault(name, [])
                    phase = (item.metadata.labels or {}).get(PHASE_LABEL)
                    if not phases or phases[-1] != phase:
                        phases.append(phase)
        except ProtocolError:
            pass  # the state namespace was deleted after the test: the stream ends

    def stop(self) -> None:
        self._watch.stop()  # type: ignore[no-untyped-call]


@pytest.fixture
def journal_phases(api_client: client.ApiClient, make_settings: Callable[..., Settings]) -> Iterator[JournalPhases]:
    settings = make_settings()
    StateStore(api_client, settings).ensure_namespace()
    phases = JournalPhases(api_client, settings.store_namespace)
    yield phases
    phases.stop()


@pytest.fixture
def bad_rollout(api_client: client.ApiClient, namespace: str) -> ObjectRef:
    """A Deployment that was healthy on revision 1 and pulls a missing image on revision 2."""
    create(api_client, namespace, deployment("web", "nginx:1.27", replicas=2))
    set_image(api_client, namespace, "web", MISSING)
    wait_pods(api_client, namespace, "web", {"ErrImagePull", "ImagePullBackOff"})
    return ObjectRef(kind="Deployment", namespace=namespace, name="web")


def test_a_fix_asked_for_in_adk_web_is_snapshotted_journaled_verified_counted_evented_and_mailed(
    api_client: client.ApiClient,
    adk_web_writes: Settings,
    bad_rollout: ObjectRef,
    journal_phases: JournalPhases,
    inbox: Inbox,
) -> None:
    settings, web = adk_web_writes, bad_rollout

    events = chat(http_app(), f"Diagnose and fix Deployment/web -n {web.namespace}: the new rollout is broken")

    answer = summary(events)
    assert "Remediation: fixed: Deployment/" in answer, answer
    assert image_of(api_client, web.namespace, "web") == "nginx:1.27"
    assert rollout_complete(api_client, web.namespace, "web")
    mail = inbox.wait("] FIXED:")
    text_of_mail = body(mail)
    assert "roll back Deployment/web to revision 1" in text_of_mail and "adk web" in text_of_mail
    assert "+containers[app].image: nginx:1.27" in text_of_mail
    store = StateStore(api_client, settings)
    requested = fingerprint(web, FaultKind.REQUESTED)
    ledger = store.ledger(requested)
    assert [(note.attempt, note.outcome) for note in ledger.history] == [(1, "fixed")]
    snapshots = SnapshotStore(api_client, settings, store.signer).list()
    assert len(snapshots) == 1 and requested in snapshots[0].id
    journal = store.journal_name(requested)
    assert journal_phases.seen[journal][:1] == ["snapshotted"] and journal_phases.seen[journal][-1] == "done"
    assert {"applying", "verifying"} <= set(journal_phases.seen[journal])
    assert journal in journal_phases.deleted and store.journals() == []  # closed: nothing left in flight
    assert {"Remediating", "FixApplied", "Remediated"} <= set(amos_events(api_client, web.namespace, "web"))


def refused_fix_model(web: ObjectRef) -> ScriptedLlm:
    """A model whose diagnosis proposes what the policy refuses outright (a loader variable)."""
    diagnosis = Diagnosis(
        root_cause="the image needs a preloaded library",
        category=Category.BAD_ENV,
        proposed_actions=[
            SetEnv(namespace=web.namespace, name=web.name, container="app", env_name="LD_PRELOAD", value="/tmp/x.so")
        ],
        evidence=["ImagePullBackOff"],
        confidence=0.9,
    )
    return ScriptedLlm(
        scripts={
            "coordinator": [call("diagnosis", request="diagnose"), call("remediation", request="apply"), text("done")],
            "diagnosis": [call(SET_MODEL_RESPONSE, **diagnosis.model_dump(mode="json"))],
        }
    )


def test_a_fix_the_policy_refuses_in_adk_web_changes_nothing_and_is_reported(
    api_client: client.ApiClient,
    make_settings: Callable[..., Settings],
    lab: Any,
    bad_rollout: ObjectRef,
    inbox: Inbox,
) -> None:
    web = bad_rollout
    settings = make_settings(adk_web_writes=True, kubeconfig=lab.kubeconfig)
    fixes = OrchestratorFixes(settings)
    agent = build_root_agent(settings, model=refused_fix_model(web), submit_fix=fixes)
    before = read(api_client, web.namespace, "web")

    try:
        events = chat(http_app(OneAgent(agent)), f"Fix Deployment/web -n {web.namespace}")
    finally:
        fixes.close()

    after = read(api_client, web.namespace, "web")
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]
    assert image_of(api_client, web.namespace, "web") == MISSING
    assert "LD_PRELOAD" in body(inbox.wait("] ESCALATED:"))
    assert "FixApplied" not in amos_events(api_client, web.namespace, "web")
    assert "escalated" in str(events), summary(events)
