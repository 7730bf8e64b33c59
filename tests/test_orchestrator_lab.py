"""The safety loop end to end on the lab: real API server, real controllers, the offline diagnoser (no key),
mails caught by a real SMTP server on localhost.

Incidents come from the real watch + detector (`monitors/`) where the test is about the normal flow;
tests that must hit an exact moment (a person's edit, a stop) build the `Incident` from what the lab shows
and call the orchestrator directly. A kill -9 at every step of an attempt is in `test_recovery_phases_lab`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self

import pytest
from kubernetes import client

from agents.session import run_session
from core import k8s
from core.config import Settings
from core.models import Evidence, FaultKind, Incident, ObjectRef, fingerprint
from core.report import ActionStatus, Outcome
from lab.workloads import deployment, pods_of, rollout_complete, wait_for, waiting_reasons
from monitors.detector import FaultDetector
from monitors.watch import Watcher
from notifications import Mailer, RetryPolicy
from orchestrator.breaker import BREAKER_NAME, ClusterBudget
from orchestrator.guard_rules import GuardVerdict, decide
from orchestrator.orchestrator import Orchestrator
from orchestrator.records import Phase, WorkloadState
from orchestrator.snapshots import SnapshotStore
from orchestrator.store import StateStore
from orchestrator.verify import Judge, Verdict, VerdictKind
from service.wiring import MailSink, build_orchestrator
from tests.mailbox import Inbox, body
from tests.manifests import as_body
from tools.snapshot import take_snapshot

pytestmark = pytest.mark.lab

FAST = RetryPolicy(attempts=2, initial_wait_seconds=0.01, max_wait_seconds=0.05, max_total_seconds=5)
MISSING = "nginx:1.99-does-not-exist"


def build(settings: Settings, api: client.ApiClient, mailer: Mailer | None, **options: Any) -> Orchestrator:
    """The orchestrator as the service wires it, mailing through `mailer`."""
    return build_orchestrator(settings, api, MailSink(mailer) if mailer is not None else None, **options)


class Amos:
    """The orchestrator fed by the real watch and detector, like the service runs it."""

    def __init__(self, api: client.ApiClient, settings: Settings, **options: Any) -> None:
        self.orchestrator = build(settings, api, Mailer(settings, retry=FAST), **options)
        self.incidents: list[Incident] = []
        self.detector = FaultDetector(settings, self._detected)
        self.watcher = Watcher(settings, api, self.detector, watch_timeout_seconds=60, max_backoff_seconds=2.0)

    def _detected(self, incident: Incident) -> None:
        self.incidents.append(incident)
        self.orchestrator.submit(incident)

    def __enter__(self) -> Self:
        self.orchestrator.start()
        self.watcher.start()
        assert self.watcher.wait_synced(30), "the watcher did not sync"
        return self

    def __exit__(self, *_: object) -> None:
        self.watcher.stop()
        self.orchestrator.stop(grace_seconds=5)


def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


def read(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    # with _preload_content=False the client returns the urllib3 response, not the model its signature names
    response: Any = apps(api).read_namespaced_deployment(name, namespace, _preload_content=False)
    result: dict[str, Any] = json.loads(response.data)
    return result


def spec_of(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = read(api, namespace, name)["spec"]
    return spec


def image_of(api: client.ApiClient, namespace: str, name: str) -> str:
    return str(spec_of(api, namespace, name)["template"]["spec"]["containers"][0]["image"])


def set_image(api: client.ApiClient, namespace: str, name: str, image: str, manager: str = "kubectl-set") -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}
    apps(api).patch_namespaced_deployment(name, namespace, patch, field_manager=manager)


def wait_revision(api: client.ApiClient, namespace: str, name: str, number: int) -> None:
    """Until the Deployment controller has made revision `number` (its ReplicaSet and the annotation)."""
    wait_for(
        lambda: (
            (read(api, namespace, name)["metadata"].get("annotations") or {}).get(k8s.REVISION_ANNOTATION)
            == str(number)
        ),
        what=f"{name} revision {number}",
    )


def human_edit(api: client.ApiClient, namespace: str, name: str) -> None:
    patch = {"spec": {"template": {"metadata": {"annotations": {"team.example.com/edited-by": "alice"}}}}}
    apps(api).patch_namespaced_deployment(name, namespace, patch, field_manager="kubectl-edit")


def create(api: client.ApiClient, namespace: str, manifest: dict[str, Any], *, ready: bool = True) -> None:
    apps(api).create_namespaced_deployment(namespace, as_body(manifest))
    if ready:
        name = manifest["metadata"]["name"]
        wait_for(lambda: rollout_complete(api, namespace, name), timeout=60, what=f"{name} rolled out")


def crashing_revisions(api: client.ApiClient, namespace: str, name: str, images: list[str]) -> dict[str, Any]:
    """Deployment `name` with one revision per image, every one crashing; its spec once the last is current."""
    create(api, namespace, deployment(name, images[0]), ready=False)
    wait_pods(api, namespace, name, {"CrashLoopBackOff"})
    for number, image in enumerate(images[1:], start=2):
        set_image(api, namespace, name, image)
        wait_revision(api, namespace, name, number)
    return spec_of(api, namespace, name)


def wait_pods(api: client.ApiClient, namespace: str, app: str, reasons: set[str]) -> None:
    wait_for(
        lambda: any(waiting_reasons(p) & reasons for p in pods_of(api, namespace, f"app={app}")),
        timeout=60,
        what=f"{app} pods in {reasons}",
    )


def incident_for(namespace: str, name: str, kind: FaultKind, reason: str) -> Incident:
    """An incident built from what the lab shows, for tests that drive the orchestrator directly."""
    ref = ObjectRef(kind="Deployment", namespace=namespace, name=name)
    now = datetime.now(UTC)
    return Incident(
        id=f"t-{uuid.uuid4().hex[:8]}",
        fingerprint=fingerprint(ref, kind),
        kind=kind,
        workload=ref,
        first_seen=now,
        last_seen=now,
        evidence=[Evidence(reason=reason, container="app")],
    )


def amos_events(api: client.ApiClient, namespace: str, name: str) -> list[str | None]:
    events = client.CoreV1Api(api).list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
    return [e.reason for e in events.items if e.reporting_component == "amos"]


# --- the normal flow, from the real watch ------------------------------------------------------------------


def test_bad_image_rollout_is_rolled_back_and_reported_fixed_with_the_diff(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    create(api_client, namespace, deployment("web", "nginx:1.27", replicas=2))
    settings = make_settings()
    with Amos(amos_api, settings) as amos:
        set_image(api_client, namespace, "web", MISSING)
        mail = inbox.wait("] FIXED:")
        assert amos.orchestrator.wait_idle(30)

    assert "Deployment/web" in str(mail["Subject"])
    text = body(mail)
    assert f"-containers[app].image: {MISSING}" in text and "+containers[app].image: nginx:1.27" in text
    assert "roll back Deployment/web to revision 1" in text and "Attempt:     1 of 2" in text
    assert rollout_complete(api_client, namespace, "web")
    listed: list[Any] = pods_of(api_client, namespace, "app=web")  # read as the API's JSON shapes, fields unchecked
    pods = [p for p in listed if p.metadata.deletion_timestamp is None]
    assert {p.spec.containers[0].image for p in pods} == {"nginx:1.27"}
    assert all(any(c.type == "Ready" and c.status == "True" for c in p.status.conditions) for p in pods)
    store = StateStore(api_client, settings)
    assert store.journals() == []  # nothing left in flight
    ledger = store.ledger(
        fingerprint(ObjectRef(kind="Deployment", namespace=namespace, name="web"), FaultKind.IMAGE_PULL)
    )
    assert ledger.attempts == 0 and ledger.history[-1].outcome == "fixed"
    assert len(SnapshotStore(api_client, settings, store.signer).list()) == 1
    assert {"Remediating", "FixApplied", "Remediated", "Fixed"} <= set(amos_events(api_client, namespace, "web"))
    assert [s for s in inbox.subjects() if "] FIXED:" not in s] == []


def test_oom_killed_gets_a_higher_memory_limit_and_becomes_ready(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    with Amos(amos_api, make_settings()) as amos:
        create(
            api_client,
            namespace,
            deployment("cache", "shop/cache:2.1", env={"LAB_MEMORY_MI": "200"}, memory_limit="128Mi"),
            ready=False,
        )
        mail = inbox.wait("] FIXED:")
        assert amos.orchestrator.wait_idle(30)

    text = body(mail)
    assert "OOMKilled" in str(mail["Subject"])
    assert "-containers[app].resources.limits.memory: 128Mi" in text
    assert "+containers[app].resources.limits.memory: 256Mi" in text
    assert rollout_complete(api_client, namespace, "cache")
    limits = spec_of(api_client, namespace, "cache")["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["memory"] == "256Mi"


def test_a_fix_that_does_not_help_is_undone_twice_then_escalated_leaving_nothing_changed(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    # Every revision crashes: the offline rules roll back to revision 2 (1.5-crash), then to revision 1 (1.0-crash).
    before = crashing_revisions(
        api_client, namespace, "api", ["shop/api:1.0-crash", "shop/api:1.5-crash", "shop/api:2.0-crash"]
    )
    settings = make_settings()

    with Amos(amos_api, settings) as amos:
        mail = inbox.wait("] ESCALATED:", timeout=240)
        assert amos.orchestrator.wait_idle(60)
        time.sleep(2)  # whatever the detector still says about this workload: blocked, no more mail

    text = body(mail)
    assert "Attempt:     2 of 2" in text
    assert "did not help in 2 attempt(s)" in text
    assert text.count("it did not help, so AMOS restored the snapshot taken before it") == 2
    assert text.count("[applied] rollback") == 2 and text.count("[applied] restore") == 2
    assert spec_of(api_client, namespace, "api") == before
    store = StateStore(api_client, settings)
    assert store.journals() == []
    state = store.workload_state(ObjectRef(kind="Deployment", namespace=namespace, name="api"))
    assert state.blocked_until is not None
    assert len(SnapshotStore(api_client, settings, store.signer).list()) == 2
    assert [s for s in inbox.subjects() if "] ESCALATED:" not in s] == []
    assert len(inbox.subjects()) == 1
    assert {"VerificationFailed", "RolledBack", "Escalated"} <= set(amos_events(api_client, namespace, "api"))


def test_a_template_that_failed_is_not_tried_again_under_its_new_revision_number(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    # Both revisions crash. Attempt 1 rolls back to revision 1, which the Deployment renumbers 3; it fails and is
    # restored. Attempt 2 must not roll back to revision 3: it is the template that just failed.
    before = crashing_revisions(api_client, namespace, "api", ["shop/api:1.0-crash", "shop/api:2.0-crash"])

    with Amos(amos_api, make_settings()) as amos:
        mail = inbox.wait("] ESCALATED:", timeout=240)
        assert amos.orchestrator.wait_idle(60)

    text = body(mail)
    assert text.count("[applied] rollback") == 1 and text.count("[applied] restore") == 1
    assert "1.0-crash" not in image_of(api_client, namespace, "api")
    assert spec_of(api_client, namespace, "api") == before
    assert len(inbox.subjects()) == 1


def test_missing_configmap_escalates_without_any_change(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    create(api_client, namespace, deployment("api", "shop/api:2.0", env_from_configmap="api-config"), ready=False)
    wait_pods(api_client, namespace, "api", {"CreateContainerConfigError"})
    before = read(api_client, namespace, "api")
    settings = make_settings()

    with Amos(amos_api, settings) as amos:
        mail = inbox.wait("] ESCALATED:")
        assert amos.orchestrator.wait_idle(30)

    text = body(mail)
    assert "api-config" in text and "AMOS changed nothing in the cluster." in text
    after = read(api_client, namespace, "api")
    assert after["spec"] == before["spec"]
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    store = StateStore(api_client, settings)
    ledger = store.ledger(
        fingerprint(ObjectRef(kind="Deployment", namespace=namespace, name="api"), FaultKind.CONTAINER_CONFIG)
    )
    assert ledger.attempts == 0  # nothing changed, so no attempt was spent
    assert store.journals() == []


def test_dry_run_sends_a_recommendation_and_changes_nothing(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    create(api_client, namespace, deployment("web", "nginx:1.27"))
    set_image(api_client, namespace, "web", MISSING)
    before = read(api_client, namespace, "web")

    with Amos(amos_api, make_settings(dry_run=True)) as amos:
        mail = inbox.wait("] RECOMMENDED:")
        assert amos.orchestrator.wait_idle(30)

    text = body(mail)
    assert "[dry run] rollback" in text and "dry-run mode" in text
    assert "+containers[app].image: nginx:1.27" in text  # the server-side dry-run shows what would change
    after = read(api_client, namespace, "web")
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == before["metadata"]["generation"]
    assert image_of(api_client, namespace, "web") == MISSING


# --- exact moments, driven directly -------------------------------------------------------------------------


def test_a_gitops_managed_workload_only_gets_a_proposal(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    create(api_client, namespace, deployment("web", "nginx:1.27", labels={"argocd.argoproj.io/instance": "shop"}))
    set_image(api_client, namespace, "web", MISSING)
    wait_pods(api_client, namespace, "web", {"ErrImagePull", "ImagePullBackOff"})
    before = read(api_client, namespace, "web")
    orchestrator = build(make_settings(), amos_api, Mailer(make_settings(), retry=FAST))
    orchestrator.store.ensure_namespace()

    report = orchestrator.process(incident_for(namespace, "web", FaultKind.IMAGE_PULL, "ImagePullBackOff"))

    assert report is not None and report.outcome is Outcome.RECOMMENDED
    assert "Argo CD" in (report.escalation_reason or "")
    assert [a.status for a in report.actions] == [ActionStatus.DRY_RUN]
    assert "Argo CD" in body(inbox.wait("] RECOMMENDED:"))
    assert read(api_client, namespace, "web")["metadata"]["generation"] == before["metadata"]["generation"]


def test_a_person_editing_between_snapshot_and_fix_is_never_overwritten(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    create(api_client, namespace, deployment("web", "nginx:1.27"))
    set_image(api_client, namespace, "web", MISSING)
    wait_pods(api_client, namespace, "web", {"ErrImagePull", "ImagePullBackOff"})

    async def person_edits_first(incident: Incident, *args: Any, **kwargs: Any) -> Any:
        human_edit(api_client, namespace, "web")  # after the snapshot, before the agent's fix
        return await run_session(incident, *args, **kwargs)

    settings = make_settings()
    orchestrator = build(settings, amos_api, Mailer(settings, retry=FAST), session_runner=person_edits_first)
    orchestrator.store.ensure_namespace()
    report = orchestrator.process(incident_for(namespace, "web", FaultKind.IMAGE_PULL, "ImagePullBackOff"))
    edited = read(api_client, namespace, "web")

    assert report is not None and report.outcome is Outcome.ESCALATED
    assert "changed by someone else" in (report.escalation_reason or "")
    assert [a.status for a in report.actions] == [ActionStatus.REFUSED]
    template = edited["spec"]["template"]
    assert template["metadata"]["annotations"]["team.example.com/edited-by"] == "alice"
    assert template["spec"]["containers"][0]["image"] == MISSING  # AMOS did not build on the person's change
    assert inbox.wait("] ESCALATED:")


def test_a_person_editing_during_verification_blocks_the_restore(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    create(api_client, namespace, deployment("web", "nginx:1.27"))
    set_image(api_client, namespace, "web", MISSING)
    wait_pods(api_client, namespace, "web", {"ErrImagePull", "ImagePullBackOff"})

    class PersonEditsWhileJudging(Judge):
        def verify(self, baseline: Any, **kwargs: Any) -> Verdict:
            human_edit(api_client, namespace, "web")
            return Verdict(kind=VerdictKind.FAILURE, reason="pretend the fix did not help")

    settings = make_settings()
    orchestrator = build(
        settings, amos_api, Mailer(settings, retry=FAST), judge=lambda access: PersonEditsWhileJudging(access, settings)
    )
    orchestrator.store.ensure_namespace()
    report = orchestrator.process(incident_for(namespace, "web", FaultKind.IMAGE_PULL, "ImagePullBackOff"))
    after = read(api_client, namespace, "web")

    assert report is not None and report.outcome is Outcome.ESCALATED and report.attempt == 1
    assert "not overwritten" in (report.escalation_reason or "")
    assert after["spec"]["template"]["metadata"]["annotations"]["team.example.com/edited-by"] == "alice"
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27"  # AMOS's fix + her edit
    assert "not overwritten" in body(inbox.wait("] ESCALATED:"))
    assert "RollbackConflict" in amos_events(api_client, namespace, "web")


def test_a_reverted_fix_is_escalated_not_fought(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    create(api_client, namespace, deployment("web", "nginx:1.27"))
    set_image(api_client, namespace, "web", MISSING)
    wait_pods(api_client, namespace, "web", {"ErrImagePull", "ImagePullBackOff"})
    settings = make_settings()
    orchestrator = build(settings, amos_api, Mailer(settings, retry=FAST))
    orchestrator.store.ensure_namespace()
    incident = incident_for(namespace, "web", FaultKind.IMAGE_PULL, "ImagePullBackOff")
    fixed = orchestrator.process(incident)
    assert fixed is not None and fixed.outcome is Outcome.FIXED

    set_image(api_client, namespace, "web", MISSING, manager="argocd-controller")  # a sync puts it back
    reports = orchestrator.check_reverts()

    assert [r.outcome for r in reports] == [Outcome.ESCALATED]
    assert "reverted" in (reports[0].escalation_reason or "")
    assert "reverted" in body(inbox.wait("] ESCALATED:"))
    assert image_of(api_client, namespace, "web") == MISSING  # not fought
    assert orchestrator.process(incident_for(namespace, "web", FaultKind.IMAGE_PULL, "ImagePullBackOff")) is None
    assert image_of(api_client, namespace, "web") == MISSING  # blocked: left to the person


def test_stop_rolls_back_a_fix_it_could_not_verify_in_time(
    api_client: client.ApiClient,
    amos_api: client.ApiClient,
    namespace: str,
    inbox: Inbox,
    make_settings: Callable[..., Settings],
) -> None:
    create(api_client, namespace, deployment("web", "nginx:1.27"))
    set_image(api_client, namespace, "web", MISSING)
    wait_pods(api_client, namespace, "web", {"ErrImagePull", "ImagePullBackOff"})
    before = spec_of(api_client, namespace, "web")
    settings = make_settings(verify_timeout_seconds=120)
    orchestrator = build(
        settings,
        amos_api,
        Mailer(settings, retry=FAST),  # keeps verifying:
        judge=lambda access: Judge(access, settings, stable_seconds=90),
    )
    orchestrator.start()
    incident = incident_for(namespace, "web", FaultKind.IMAGE_PULL, "ImagePullBackOff")
    orchestrator.submit(incident)
    wait_for(
        lambda: (
            (entry := orchestrator.store.read_journal(incident.fingerprint)) is not None
            and entry.phase is Phase.VERIFYING
        ),
        timeout=60,
        what="the journal to say verifying",
    )

    assert orchestrator.stop(grace_seconds=0.5)

    report = orchestrator.reports[-1]
    assert report.outcome is Outcome.ROLLED_BACK and report.rolled_back
    assert spec_of(api_client, namespace, "web") == before
    assert orchestrator.store.journals() == []
    assert "ROLLED BACK" in str(inbox.wait("] ROLLED BACK:")["Subject"])


# --- durable guard-rail state ---------------------------------------------------------------------------------


def test_the_circuit_breaker_opens_on_the_budget_and_a_person_resets_it(
    api_client: client.ApiClient, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(actions_per_hour=2)
    store = StateStore(api_client, settings)
    store.ensure_namespace()
    budget = ClusterBudget(api_client, settings)
    core = client.CoreV1Api(api_client)
    workload = {"kind": "Deployment", "metadata": {"name": "web", "namespace": "shop"}}

    def verdict() -> GuardVerdict:
        state = budget.sync()
        return decide(
            settings=settings,
            now=datetime.now(UTC),
            workload=workload,
            state=WorkloadState(workload=ObjectRef(kind="Deployment", namespace="shop", name="web")),
            breaker=state,
            budget_used=budget.used(),
            health=None,
        ).verdict

    assert verdict() is GuardVerdict.PROCEED
    budget.note()
    budget.note()
    assert budget.read()[0].state == "open"
    assert verdict() is GuardVerdict.PROPOSE
    assert ClusterBudget(api_client, settings).sync().state == "open"  # a restarted AMOS sees it too

    core.patch_namespaced_config_map(BREAKER_NAME, settings.store_namespace, {"data": {"state": "closed"}})
    assert verdict() is GuardVerdict.PROCEED and budget.used() == 0

    budget.note()
    budget.note()
    assert verdict() is GuardVerdict.PROPOSE
    core.delete_namespaced_config_map(BREAKER_NAME, settings.store_namespace)
    assert verdict() is GuardVerdict.PROCEED and budget.used() == 0


def test_snapshots_are_kept_up_to_the_retention_and_hold_everything_a_fix_may_touch(
    api_client: client.ApiClient, namespace: str, make_settings: Callable[..., Settings]
) -> None:
    client.CoreV1Api(api_client).create_namespaced_config_map(
        namespace, as_body({"metadata": {"name": "api-config"}, "data": {"MODE": "prod"}})
    )
    create(api_client, namespace, deployment("api", "shop/api:2.0", env_from_configmap="api-config"))
    set_image(api_client, namespace, "api", "shop/api:2.1")
    wait_for(lambda: rollout_complete(api_client, namespace, "api"), what="revision 2")
    settings = make_settings(snapshot_retention=2)
    orchestrator = build(settings, api_client, None)
    store = orchestrator.store
    store.ensure_namespace()
    snapshots = orchestrator.steps.snapshots
    ref = ObjectRef(kind="Deployment", namespace=namespace, name="api")
    saved = []
    for _ in range(3):
        saved.append(snapshots.save(take_snapshot(orchestrator.access, ref, datetime.now(UTC)), "fp"))
        time.sleep(1.1)
    entry_protected = saved[0].id
    snapshots.prune(settings.snapshot_retention, {entry_protected})
    kept = {info.id for info in snapshots.list()}
    assert kept == {saved[0].id, saved[2].id}  # the newest ones, plus the one an unfinished fix needs
    loaded = snapshots.load(saved[2].id)
    assert loaded is not None
    assert loaded.workload["metadata"]["resourceVersion"] and loaded.generation == 2
    assert sorted(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in loaded.replicasets) == [
        "1",
        "2",
    ]
    assert [cm["metadata"]["name"] for cm in loaded.config_maps] == ["api-config"]
    time.sleep(1.1)
    newest = snapshots.save(take_snapshot(orchestrator.access, ref, datetime.now(UTC)), "fp")
    snapshots.prune(settings.snapshot_retention, set())
    assert {info.id for info in snapshots.list()} == {saved[2].id, newest.id}  # no longer protected: pruned
