"""The scenarios: a healthy start, one injected fault, and what a good SRE would expect AMOS to do.

Each fault is injected the way it happens in real life (a rollout with a bad image, a
lowered limit, a ConfigMap key someone forgot), so the expectation is about the root
cause, not the symptom. Besides the outcome and the category, each scenario says what
the cluster must look like afterwards (`After`): the known-good template back, the
faulty one untouched, or the same template with a raised memory limit.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from kubernetes import client
from pydantic import BaseModel, ConfigDict

from core.actions import Category
from core.models import FaultKind
from core.report import Outcome
from lab.workloads import (
    config_map,
    container,
    create,
    cronjob,
    daemonset,
    deployment,
    http_probe,
    job,
    limit_range,
    pod,
    pods_of,
    resource_quota,
    statefulset,
    wait_for,
)

Inject = Callable[[client.ApiClient, str], None]


class After(StrEnum):
    """What the faulty workload's pod template must be once AMOS is done."""

    RESTORED = "restored"  # equal to the known-good template it had before the fault
    UNCHANGED = "unchanged"  # equal to the faulty template: AMOS escalated and touched nothing
    RAISED = "raised"  # the faulty template with a higher memory limit, nothing else removed
    ANY = "any"


class Scenario(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    description: str
    healthy: tuple[dict[str, Any], ...]  # created and awaited Ready (or succeeded) before the fault
    inject: Inject
    faulty: tuple[str, ...]  # names of the workloads the fault is injected into
    expected_kinds: tuple[FaultKind, ...]  # one per faulty workload; empty: AMOS must not act at all
    expected_category: Category | None  # the Diagnosis category a right root cause has
    expected_outcome: Outcome | None
    after: After = After.ANY
    expected_text: tuple[str, ...] = ()  # words the final report must contain (root cause, steps, reason)
    faulty_kind: str = "Deployment"
    excluded_namespace: bool = False
    max_attempts_expected: int = 1
    timeout_seconds: float = 240.0  # from the injection to the last report

    @property
    def fault(self) -> str:
        return ", ".join(kind.value for kind in self.expected_kinds) or "none"

    @property
    def restorable(self) -> bool:
        """A scenario whose right outcome is a fix (its MTTR is a figure worth publishing)."""
        return self.expected_outcome is Outcome.FIXED


# --- injections ------------------------------------------------------------------------------------


def _patch(
    name: str,
    change: dict[str, Any],
    *,
    kind: str = "Deployment",
    container_name: str = "app",
    field: str = "containers",
) -> Inject:
    """A rollout: a strategic-merge patch of one container of the workload's pod template."""

    def inject(api: client.ApiClient, namespace: str) -> None:
        pod_spec = {field: [{"name": container_name, **change}]}
        apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
        if kind == "CronJob":
            cron_body = {"spec": {"jobTemplate": {"spec": {"template": {"spec": pod_spec}}}}}
            batch.patch_namespaced_cron_job(name, namespace, cron_body)
            return
        body = {"spec": {"template": {"spec": pod_spec}}}
        {
            "Deployment": apps.patch_namespaced_deployment,
            "StatefulSet": apps.patch_namespaced_stateful_set,
            "DaemonSet": apps.patch_namespaced_daemon_set,
        }[kind](name, namespace, body)

    return inject


def _create(manifest: dict[str, Any]) -> Inject:
    def inject(api: client.ApiClient, namespace: str) -> None:
        create(api, namespace, manifest)

    return inject


def _both(*steps: Inject) -> Inject:
    def inject(api: client.ApiClient, namespace: str) -> None:
        for step in steps:
            step(api, namespace)

    return inject


def _container_statuses(pod: client.V1Pod) -> list[client.V1ContainerStatus]:
    """A listed pod's container statuses: the API server always sets its status."""
    assert pod.status is not None
    return pod.status.container_statuses or []


def _after_a_crash(app: str) -> Inject:
    """Wait until a pod of `app` has crashed once: the next rollout lands on a revision seen failing."""

    def inject(api: client.ApiClient, namespace: str) -> None:
        def crashed() -> bool:
            return any(
                (s.last_state and s.last_state.terminated) or (s.state and s.state.terminated)
                for p in pods_of(api, namespace, f"app={app}")
                for s in _container_statuses(p)
            )

        wait_for(crashed, timeout=60, what=f"a crash of {app}")

    return inject


# --- the workloads ---------------------------------------------------------------------------------

_BYSTANDER = deployment("bystander", "nginx:1.27", replicas=1)
WEB_PORT = 8080


def _with_probe(name: str, **probes: dict[str, Any]) -> dict[str, Any]:
    # Kubernetes' default progress deadline (10 min): a pod that never gets Ready is a readiness fault first.
    options: dict[str, Any] = dict(probes)
    return deployment(name, "shop/web:1.4", replicas=2, ports=[WEB_PORT], progress_deadline_seconds=600, **options)


def _with_init(name: str, init_image: str = "shop/migrate:1.0") -> dict[str, Any]:
    return deployment(name, "shop/api:2.0", replicas=2, init_containers=[container(init_image, name="migrate")])


def _with_sidecar(name: str) -> dict[str, Any]:
    return deployment(name, "shop/api:2.0", replicas=2, sidecars=[container("shop/proxy:1.30", name="proxy")])


def _oom_beyond_bounds() -> dict[str, Any]:
    # needs 1000Mi with a 128Mi limit: doubling the limit (the policy's bound) cannot help
    return deployment("greedy", "shop/cache:3.0", env={"LAB_MEMORY_MI": "1000"}, memory_limit="128Mi")


_ORDERS_CONFIG = config_map("orders-config", {"log_level": "info"})
_ORDERS = deployment(
    "orders",
    "shop/orders:1.0",
    replicas=2,
    env_refs=[{"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "orders-config", "key": "log_level"}}}],
)
_DATABASE_URL_FROM_CONFIG = {
    "env": [
        {"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "orders-config", "key": "log_level"}}},
        {"name": "DATABASE_URL", "valueFrom": {"configMapKeyRef": {"name": "orders-config", "key": "database_url"}}},
    ]
}

LEGACY: tuple[Scenario, ...] = (
    Scenario(
        name="bad-image-rollout",
        description="a rollout to an image tag that does not exist",
        healthy=(deployment("web", "nginx:1.27", replicas=3), _BYSTANDER),
        inject=_patch("web", {"image": "nginx:1.28-does-not-exist"}),
        faulty=("web",),
        expected_kinds=(FaultKind.IMAGE_PULL,),
        expected_category=Category.BAD_IMAGE,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="bad-args",
        description="a rollout that passes a flag the program does not know",
        healthy=(deployment("api", "shop/api:2.0", replicas=2), _BYSTANDER),
        inject=_patch("api", {"args": ["--bad-listen=:9090"]}),
        faulty=("api",),
        expected_kinds=(FaultKind.CRASH_LOOP,),
        expected_category=Category.BAD_COMMAND,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="bad-env",
        description="a rollout that points the database URL at a host that does not resolve",
        healthy=(deployment("api", "shop/api:2.0", replicas=2), _BYSTANDER),
        inject=_patch("api", {"env": [{"name": "DATABASE_URL", "value": "postgres://db.shop.invalid:5432/shop"}]}),
        faulty=("api",),
        expected_kinds=(FaultKind.CRASH_LOOP,),
        expected_category=Category.BAD_ENV,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="oom-lowered-limit",
        description="a memory limit lowered below what the cache needs",
        healthy=(deployment("cache", "shop/cache:2.1", env={"LAB_MEMORY_MI": "200"}, memory_limit="256Mi"), _BYSTANDER),
        inject=_patch("cache", {"resources": {"limits": {"memory": "160Mi"}, "requests": {"memory": "160Mi"}}}),
        faulty=("cache",),
        expected_kinds=(FaultKind.OOM_KILLED,),
        expected_category=Category.OOM,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="missing-configmap",
        description="a rollout that reads a ConfigMap nobody created",
        healthy=(deployment("api", "shop/api:2.0"), _BYSTANDER),
        inject=_patch("api", {"envFrom": [{"configMapRef": {"name": "api-settings"}}]}),
        faulty=("api",),
        expected_kinds=(FaultKind.CONTAINER_CONFIG,),
        expected_category=Category.MISSING_CONFIG,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
        expected_text=("create ConfigMap api-settings",),
    ),
    Scenario(
        name="failing-job",
        description="a batch Job whose pods exit non-zero until the back-off limit",
        healthy=(_BYSTANDER,),
        inject=_create(job("nightly-report", env={"LAB_EXIT_CODE": "3"}, backoff_limit=1)),
        faulty=("nightly-report",),
        faulty_kind="Job",
        expected_kinds=(FaultKind.JOB_FAILED,),
        expected_category=Category.JOB_FAILURE,
        expected_outcome=Outcome.ESCALATED,
        after=After.UNCHANGED,
    ),
    Scenario(
        name="unschedulable-new-workload",
        description="a new Deployment asking for more CPU than any node has",
        healthy=(_BYSTANDER,),
        inject=_create(deployment("big", "nginx:1.27", cpu_request="500")),
        faulty=("big",),
        expected_kinds=(FaultKind.UNSCHEDULABLE,),
        expected_category=Category.UNSCHEDULABLE,
        expected_outcome=Outcome.ESCALATED,
        after=After.UNCHANGED,
        expected_text=("Insufficient cpu", "cpu=500"),
    ),
    Scenario(
        name="excluded-namespace",
        description="a bad image in a namespace AMOS is told to leave alone",
        healthy=(deployment("web", "nginx:1.27", replicas=2), _BYSTANDER),
        inject=_patch("web", {"image": "nginx:1.28-does-not-exist"}),
        faulty=("web",),
        expected_kinds=(),
        expected_category=None,
        expected_outcome=None,
        excluded_namespace=True,
    ),
    Scenario(
        name="crash-without-good-revision",
        description="a new Deployment that crashes from its first revision",
        healthy=(_BYSTANDER,),
        inject=_create(deployment("fresh", "shop/api:1.0-crash", replicas=2)),
        faulty=("fresh",),
        expected_kinds=(FaultKind.CRASH_LOOP,),
        expected_category=Category.UNKNOWN,
        expected_outcome=Outcome.ESCALATED,
        after=After.UNCHANGED,
    ),
    Scenario(
        name="two-faults-at-once",
        description="two Deployments broken in the same minute",
        healthy=(deployment("web", "nginx:1.27", replicas=2), deployment("api", "shop/api:2.0"), _BYSTANDER),
        inject=_both(
            _patch("web", {"image": "nginx:1.28-does-not-exist"}), _patch("api", {"args": ["--invalid-mode"]})
        ),
        faulty=("web", "api"),
        expected_kinds=(FaultKind.IMAGE_PULL, FaultKind.CRASH_LOOP),
        expected_category=None,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="fix-cannot-work",
        description="an OOM that the bounded memory raise cannot cure",
        healthy=(_BYSTANDER,),
        inject=_create(_oom_beyond_bounds()),
        faulty=("greedy",),
        expected_kinds=(FaultKind.OOM_KILLED,),
        expected_category=Category.OOM,
        expected_outcome=Outcome.ESCALATED,
        max_attempts_expected=2,
    ),
)

# Every rollout-induced fault class, every kind that keeps history, and the faults that cannot be rolled back.
RESTORE: tuple[Scenario, ...] = (
    Scenario(
        name="init-container-image",
        description="a rollout whose init container's image does not exist",
        healthy=(_with_init("api"), _BYSTANDER),
        inject=_patch("api", {"image": "shop/migrate:1.1-missing"}, container_name="migrate", field="initContainers"),
        faulty=("api",),
        expected_kinds=(FaultKind.INIT_CONTAINER,),
        expected_category=Category.BAD_IMAGE,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="sidecar-image",
        description="a rollout that moves the proxy sidecar to an image that does not exist",
        healthy=(_with_sidecar("api"), _BYSTANDER),
        inject=_patch("api", {"image": "shop/proxy:1.31-notfound"}, container_name="proxy"),
        faulty=("api",),
        expected_kinds=(FaultKind.IMAGE_PULL,),
        expected_category=Category.BAD_IMAGE,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="back-to-back-rollouts",
        description="good -> a crashing release -> a bad image: the first must return",
        healthy=(deployment("web", "shop/web:1.0", replicas=2), _BYSTANDER),
        inject=_both(
            _patch("web", {"image": "shop/web:2.0-crash"}),
            _after_a_crash("web"),
            _patch("web", {"image": "shop/web:3.0-missing"}),
        ),
        faulty=("web",),
        expected_kinds=(FaultKind.IMAGE_PULL,),
        expected_category=None,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="missing-config-key",
        description="a rollout that reads a key the ConfigMap does not have",
        healthy=(_ORDERS_CONFIG, _ORDERS, _BYSTANDER),
        inject=_patch("orders", _DATABASE_URL_FROM_CONFIG),
        faulty=("orders",),
        expected_kinds=(FaultKind.CONTAINER_CONFIG,),
        expected_category=Category.MISSING_CONFIG,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
        expected_text=("create key database_url in ConfigMap orders-config",),
    ),
    Scenario(
        name="missing-secret",
        description="a rollout that reads a password from a Secret that does not exist",
        healthy=(deployment("api", "shop/api:2.0"), _BYSTANDER),
        inject=_patch(
            "api",
            {
                "env": [
                    {
                        "name": "DB_PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}},
                    }
                ]
            },
        ),
        faulty=("api",),
        expected_kinds=(FaultKind.CONTAINER_CONFIG,),
        expected_category=Category.MISSING_CONFIG,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
        expected_text=("create Secret db-credentials",),
    ),
    Scenario(
        name="cpu-past-every-node",
        description="a rollout asking for more CPU than any node has",
        healthy=(deployment("big", "nginx:1.27", replicas=2, cpu_request="100m"), _BYSTANDER),
        inject=_patch("big", {"resources": {"requests": {"cpu": "64"}}}),
        faulty=("big",),
        expected_kinds=(FaultKind.UNSCHEDULABLE,),
        expected_category=Category.UNSCHEDULABLE,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="limitrange-oom",
        description="no limit in the template, a LimitRange default below what the app needs",
        healthy=(limit_range("defaults", default_memory="64Mi"), _BYSTANDER),
        inject=_create(deployment("cache", "shop/cache:2.1", env={"LAB_MEMORY_MI": "100"})),
        faulty=("cache",),
        expected_kinds=(FaultKind.OOM_KILLED,),
        expected_category=Category.OOM,
        expected_outcome=Outcome.FIXED,
        after=After.RAISED,
        expected_text=("LimitRange",),
    ),
    Scenario(
        name="probe-liveness",
        description="a rollout whose liveness probe checks a path the app does not serve",
        healthy=(_with_probe("web", liveness=http_probe("/healthz", WEB_PORT)), _BYSTANDER),
        inject=_patch("web", {"livenessProbe": http_probe("/health/deep", WEB_PORT)}),
        faulty=("web",),
        expected_kinds=(FaultKind.LIVENESS_FAILED,),
        expected_category=Category.PROBE,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="probe-readiness",
        description="a rollout whose readiness probe checks a port the app does not open",
        healthy=(_with_probe("web", readiness=http_probe("/readyz", WEB_PORT)), _BYSTANDER),
        inject=_patch("web", {"readinessProbe": http_probe("/readyz", 9090)}),
        faulty=("web",),
        expected_kinds=(FaultKind.NOT_READY,),
        expected_category=Category.PROBE,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="statefulset-bad-image",
        description="a StatefulSet rolled to an image that does not exist",
        healthy=(statefulset("db", "shop/db:15.4", replicas=2), _BYSTANDER),
        inject=_patch("db", {"image": "shop/db:16.0-missing"}, kind="StatefulSet"),
        faulty=("db",),
        faulty_kind="StatefulSet",
        expected_kinds=(FaultKind.IMAGE_PULL,),
        expected_category=Category.BAD_IMAGE,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="daemonset-bad-args",
        description="a DaemonSet rolled out with a flag its agent does not know",
        healthy=(daemonset("agent", "shop/agent:1.0"), _BYSTANDER),
        inject=_patch("agent", {"args": ["--bad-scrape-interval=5"]}, kind="DaemonSet"),
        faulty=("agent",),
        faulty_kind="DaemonSet",
        expected_kinds=(FaultKind.CRASH_LOOP,),
        expected_category=Category.BAD_COMMAND,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="cronjob-failing-runs",
        description="a CronJob whose job template was changed to one that exits 3",
        healthy=(cronjob("report", "shop/report:1.0"), _BYSTANDER),
        inject=_patch("report", {"env": [{"name": "LAB_EXIT_CODE", "value": "3"}]}, kind="CronJob"),
        faulty=("report",),
        faulty_kind="CronJob",
        expected_kinds=(FaultKind.JOB_FAILED,),
        expected_category=Category.JOB_FAILURE,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
        timeout_seconds=420.0,
    ),
    Scenario(
        name="quota-failedcreate",
        description="a rollout asking for more memory than the namespace's quota leaves",
        healthy=(
            resource_quota("compute", {"requests.memory": "256Mi", "limits.memory": "256Mi"}),
            deployment("api", "shop/api:2.0", memory_limit="64Mi"),
        ),
        inject=_patch("api", {"resources": {"limits": {"memory": "512Mi"}, "requests": {"memory": "512Mi"}}}),
        faulty=("api",),
        expected_kinds=(FaultKind.FAILED_CREATE,),
        expected_category=Category.QUOTA,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="limitrange-max-failedcreate",
        description="a rollout whose memory limit is above the LimitRange maximum",
        healthy=(limit_range("ceiling", max_memory="256Mi"), deployment("api", "shop/api:2.0", memory_limit="64Mi")),
        inject=_patch("api", {"resources": {"limits": {"memory": "1Gi"}, "requests": {"memory": "1Gi"}}}),
        faulty=("api",),
        expected_kinds=(FaultKind.FAILED_CREATE,),
        expected_category=Category.QUOTA,
        expected_outcome=Outcome.FIXED,
        after=After.RESTORED,
    ),
    Scenario(
        name="quota-new-workload",
        description="a new Deployment that the namespace's quota cannot admit",
        healthy=(resource_quota("compute", {"requests.memory": "128Mi", "limits.memory": "128Mi"}),),
        inject=_create(deployment("api", "shop/api:2.0", memory_limit="512Mi")),
        faulty=("api",),
        expected_kinds=(FaultKind.FAILED_CREATE,),
        expected_category=Category.QUOTA,
        expected_outcome=Outcome.ESCALATED,
        after=After.UNCHANGED,
        expected_text=("exceeded quota", "memory=512Mi"),
    ),
    Scenario(
        name="bare-pod-crash",
        description="a Pod without a controller whose database host does not resolve",
        healthy=(_BYSTANDER,),
        inject=_create(pod("debug", "shop/api:2.0", env={"DATABASE_URL": "postgres://db.shop.invalid:5432/shop"})),
        faulty=("debug",),
        faulty_kind="Pod",
        expected_kinds=(FaultKind.CRASH_LOOP,),
        expected_category=Category.BAD_ENV,
        expected_outcome=Outcome.ESCALATED,
        after=After.UNCHANGED,
        expected_text=("no such host",),
    ),
)

SCENARIOS: tuple[Scenario, ...] = LEGACY + RESTORE
