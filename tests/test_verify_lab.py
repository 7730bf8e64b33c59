"""The judge on the lab for the kinds beyond Deployments: a healthy StatefulSet, DaemonSet and CronJob run are a
success, a broken one a failure, and a CronJob with no run before the deadline is "verified at the next run"."""

from __future__ import annotations

import functools
from typing import Any

import pytest
from kubernetes import client

from core.config import Settings
from core.models import ObjectRef
from core.redaction import Redactor
from lab import workloads
from orchestrator.assessment import Baseline
from orchestrator.verify import Judge, VerdictKind
from tests.manifests import as_body
from tools.cluster import ClusterAccess

pytestmark = pytest.mark.lab

wait_for = functools.partial(workloads.wait_for, timeout=120.0, interval=0.25)
GOOD = "registry.local/shop/app:v2.0.1"
MISSING = "registry.local/shop/app:v2.1.0-missing"


def pod_template(app: str, image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": image, "resources": {"limits": {"memory": "64Mi"}}}],
        },
    }


def judge(api_client: client.ApiClient, timeout: float = 90.0) -> Judge:
    access = ClusterAccess(api_client, Settings(verify_timeout_seconds=timeout), Redactor())
    return Judge(access, access.settings, stable_seconds=2, failure_confirm_seconds=3)


def verify(api_client: client.ApiClient, ref: ObjectRef, timeout: float = 90.0) -> Any:
    checker = judge(api_client, timeout)
    return checker.verify(Baseline.of(ref, checker.access.get(ref.kind, ref.namespace, ref.name)))


@pytest.mark.parametrize("image, expected", [(GOOD, VerdictKind.SUCCESS), (MISSING, VerdictKind.FAILURE)])
def test_statefulset(api_client: client.ApiClient, namespace: str, image: str, expected: VerdictKind) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 2,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": pod_template("db", image),
        },
    }
    client.AppsV1Api(api_client).create_namespaced_stateful_set(namespace, as_body(body))
    verdict = verify(api_client, ObjectRef(kind="StatefulSet", namespace=namespace, name="db"))
    assert verdict.kind is expected, verdict.text()
    if expected is VerdictKind.SUCCESS:
        assert "2/2 replicas ready" in verdict.reason
    else:
        assert any("ImagePullBackOff" in detail or "ErrImagePull" in detail for detail in verdict.details)


@pytest.mark.parametrize("image, expected", [(GOOD, VerdictKind.SUCCESS), (MISSING, VerdictKind.FAILURE)])
def test_daemonset(api_client: client.ApiClient, namespace: str, image: str, expected: VerdictKind) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": pod_template("agent", image)},
    }
    client.AppsV1Api(api_client).create_namespaced_daemon_set(namespace, as_body(body))
    verdict = verify(api_client, ObjectRef(kind="DaemonSet", namespace=namespace, name="agent"))
    assert verdict.kind is expected, verdict.text()
    if expected is VerdictKind.SUCCESS:
        assert "3/3 scheduled pods ready, 3 updated" in verdict.reason  # one pod per lab node


def cronjob(image: str, env: dict[str, str] | None = None, *, suspend: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "app", "image": image}
    if env:
        container["env"] = [{"name": key, "value": value} for key, value in env.items()]
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {
            "schedule": "* * * * *",
            "suspend": suspend,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "terminationGracePeriodSeconds": 0,
                            "containers": [container],
                        }
                    },
                }
            },
        },
    }


@pytest.mark.parametrize("env, expected", [(None, VerdictKind.SUCCESS), ({"LAB_EXIT_CODE": "3"}, VerdictKind.FAILURE)])
def test_cronjob_is_judged_by_its_next_run(
    api_client: client.ApiClient, namespace: str, env: dict[str, str] | None, expected: VerdictKind
) -> None:
    client.BatchV1Api(api_client).create_namespaced_cron_job(namespace, as_body(cronjob(GOOD, env)))
    verdict = verify(api_client, ObjectRef(kind="CronJob", namespace=namespace, name="nightly"), timeout=150.0)
    assert verdict.kind is expected, verdict.text()
    text = verdict.reason if expected is VerdictKind.SUCCESS else " ".join(verdict.details)
    assert "the run nightly-" in text


def test_a_cronjob_without_a_run_before_the_deadline_is_deferred(api_client: client.ApiClient, namespace: str) -> None:
    client.BatchV1Api(api_client).create_namespaced_cron_job(namespace, as_body(cronjob(GOOD, suspend=True)))
    verdict = verify(api_client, ObjectRef(kind="CronJob", namespace=namespace, name="nightly"), timeout=3.0)
    assert verdict.kind is VerdictKind.DEFERRED and not verdict.ok, verdict.text()
    assert "verified at its next run" in verdict.reason and "suspended" in verdict.details[0]
