"""The scenarios: a healthy start, one injected fault, and what a good SRE would expect AMOS to do.

Each fault is injected the way it happens in real life (a rollout with a bad
image, a lowered limit, a ConfigMap someone forgot), so the expectation is about
the root cause, not about the symptom.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client
from pydantic import BaseModel, ConfigDict

from core.models import FaultKind
from core.report import Outcome
from lab.workloads import deployment, job

Inject = Callable[[client.ApiClient, str], None]


class Scenario(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    description: str
    healthy: tuple[dict[str, Any], ...]  # deployed and awaited Ready before the fault
    inject: Inject
    faulty: tuple[str, ...]  # workloads the fault is injected into (Deployment or Job names)
    expected_kinds: tuple[FaultKind, ...]  # one per faulty workload; empty: AMOS must not act at all
    expected_category: str | None  # the Diagnosis category a right root cause has
    expected_outcome: Outcome | None
    excluded_namespace: bool = False
    max_attempts_expected: int = 1


def _patch_container(name: str, change: dict[str, Any]) -> Inject:
    def inject(api: client.ApiClient, namespace: str) -> None:
        body = {"spec": {"template": {"spec": {"containers": [{"name": "app", **change}]}}}}
        client.AppsV1Api(api).patch_namespaced_deployment(name, namespace, body)
    return inject


def _create(manifest: dict[str, Any]) -> Inject:
    def inject(api: client.ApiClient, namespace: str) -> None:
        if manifest["kind"] == "Job":
            client.BatchV1Api(api).create_namespaced_job(namespace, manifest)
        else:
            client.AppsV1Api(api).create_namespaced_deployment(namespace, manifest)
    return inject


def _both(*steps: Inject) -> Inject:
    def inject(api: client.ApiClient, namespace: str) -> None:
        for step in steps:
            step(api, namespace)
    return inject


_BYSTANDER = deployment("bystander", "nginx:1.27", replicas=1)


def _with_crash_loop_manifest() -> dict[str, Any]:
    return deployment("fresh", "shop/api:1.0-crash", replicas=2)


def _oom_beyond_bounds() -> dict[str, Any]:
    # needs 1000Mi with a 128Mi limit: doubling the limit (the policy's bound) cannot help
    return deployment("greedy", "shop/cache:3.0", env={"LAB_MEMORY_MI": "1000"}, memory_limit="128Mi")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        name="bad-image-rollout", description="a rollout to an image tag that does not exist",
        healthy=(deployment("web", "nginx:1.27", replicas=3), _BYSTANDER),
        inject=_patch_container("web", {"image": "nginx:1.28-does-not-exist"}), faulty=("web",),
        expected_kinds=(FaultKind.IMAGE_PULL,), expected_category="bad_image", expected_outcome=Outcome.FIXED,
    ),
    Scenario(
        name="bad-args", description="a rollout that passes a flag the program does not know",
        healthy=(deployment("api", "shop/api:2.0", replicas=2), _BYSTANDER),
        inject=_patch_container("api", {"args": ["--bad-listen=:9090"]}), faulty=("api",),
        expected_kinds=(FaultKind.CRASH_LOOP,), expected_category="bad_command", expected_outcome=Outcome.FIXED,
    ),
    Scenario(
        name="bad-env", description="a rollout that points the database URL at a host that does not resolve",
        healthy=(deployment("api", "shop/api:2.0", replicas=2), _BYSTANDER),
        inject=_patch_container("api", {"env": [{"name": "DATABASE_URL",
                                                 "value": "postgres://db.shop.invalid:5432/shop"}]}),
        faulty=("api",), expected_kinds=(FaultKind.CRASH_LOOP,), expected_category="bad_env",
        expected_outcome=Outcome.FIXED,
    ),
    Scenario(
        name="oom-lowered-limit", description="a memory limit lowered below what the cache needs",
        healthy=(deployment("cache", "shop/cache:2.1", env={"LAB_MEMORY_MI": "200"}, memory_limit="256Mi"),
                 _BYSTANDER),
        inject=_patch_container("cache", {"resources": {"limits": {"memory": "160Mi"},
                                                        "requests": {"memory": "160Mi"}}}),
        faulty=("cache",), expected_kinds=(FaultKind.OOM_KILLED,), expected_category="oom",
        expected_outcome=Outcome.FIXED,
    ),
    Scenario(
        name="missing-configmap", description="a rollout that reads a ConfigMap nobody created",
        healthy=(deployment("api", "shop/api:2.0"), _BYSTANDER),
        inject=_patch_container("api", {"envFrom": [{"configMapRef": {"name": "api-settings"}}]}),
        faulty=("api",), expected_kinds=(FaultKind.CONTAINER_CONFIG,), expected_category="missing_config",
        expected_outcome=Outcome.ESCALATED,
    ),
    Scenario(
        name="missing-secret", description="a rollout that reads a password from a Secret that does not exist",
        healthy=(deployment("api", "shop/api:2.0"), _BYSTANDER),
        inject=_patch_container("api", {"env": [{"name": "DB_PASSWORD", "valueFrom": {
            "secretKeyRef": {"name": "db-credentials", "key": "password"}}}]}),
        faulty=("api",), expected_kinds=(FaultKind.CONTAINER_CONFIG,), expected_category="missing_config",
        expected_outcome=Outcome.ESCALATED,
    ),
    Scenario(
        name="failing-job", description="a batch Job whose pods exit non-zero until the back-off limit",
        healthy=(_BYSTANDER,),
        inject=_create(job("nightly-report", env={"LAB_EXIT_CODE": "3"}, backoff_limit=1)),
        faulty=("nightly-report",), expected_kinds=(FaultKind.JOB_FAILED,), expected_category="job_failure",
        expected_outcome=Outcome.ESCALATED,
    ),
    Scenario(
        name="unschedulable", description="a rollout asking for more CPU than any node has",
        healthy=(deployment("big", "nginx:1.27"), _BYSTANDER),
        inject=_patch_container("big", {"resources": {"requests": {"cpu": "500"}}}),
        faulty=("big",), expected_kinds=(FaultKind.UNSCHEDULABLE,), expected_category="unschedulable",
        expected_outcome=Outcome.ESCALATED,
    ),
    Scenario(
        name="excluded-namespace", description="a bad image in a namespace AMOS is told to leave alone",
        healthy=(deployment("web", "nginx:1.27", replicas=2), _BYSTANDER),
        inject=_patch_container("web", {"image": "nginx:1.28-does-not-exist"}), faulty=("web",),
        expected_kinds=(), expected_category=None, expected_outcome=None, excluded_namespace=True,
    ),
    Scenario(
        name="crash-without-good-revision", description="a new Deployment that crashes from its first revision",
        healthy=(_BYSTANDER,), inject=_create(_with_crash_loop_manifest()), faulty=("fresh",),
        expected_kinds=(FaultKind.CRASH_LOOP,), expected_category="unknown", expected_outcome=Outcome.ESCALATED,
    ),
    Scenario(
        name="two-faults-at-once", description="two Deployments broken in the same minute",
        healthy=(deployment("web", "nginx:1.27", replicas=2), deployment("api", "shop/api:2.0"), _BYSTANDER),
        inject=_both(_patch_container("web", {"image": "nginx:1.28-does-not-exist"}),
                     _patch_container("api", {"args": ["--invalid-mode"]})),
        faulty=("web", "api"), expected_kinds=(FaultKind.IMAGE_PULL, FaultKind.CRASH_LOOP), expected_category=None,
        expected_outcome=Outcome.FIXED,
    ),
    Scenario(
        name="fix-cannot-work", description="an OOM that the bounded memory raise cannot cure",
        healthy=(_BYSTANDER,), inject=_create(_oom_beyond_bounds()), faulty=("greedy",),
        expected_kinds=(FaultKind.OOM_KILLED,), expected_category="oom", expected_outcome=Outcome.ESCALATED,
        max_attempts_expected=2,
    ),
)
