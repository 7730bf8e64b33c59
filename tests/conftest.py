"""Shared fixtures: one lab control plane per test session, one namespace per test.

The lab is started only when a test asks for it, so the fast unit tiers run
without it. Its processes die with the test run, even when a test fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from core.config import Settings
from lab import build
from lab.cluster import LabCluster
from lab.workloads import create_namespace
from notifications.outbox import Outbox, OutboxPolicy
from tests.mailbox import Inbox, free_port


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    build.build()
    workdir = Path(os.environ.get("AMOS_LAB_WORKDIR") or tmp_path_factory.mktemp("lab"))
    cluster = LabCluster(workdir)
    seconds = cluster.start()
    print(f"\nlab: started in {seconds:.1f} s ({workdir})")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def api_client(lab: LabCluster) -> Iterator[client.ApiClient]:
    with lab.api_client() as api:
        yield api


@pytest.fixture
def namespace(api_client: client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace whose default ServiceAccount exists, so pods can be created at once."""
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = create_namespace(
        api_client, "".join(ch for ch in name if ch.isalnum() or ch == "-"), {"amos.io/test": "true"}
    )
    yield name
    client.CoreV1Api(api_client).delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    handler = Inbox()
    handler.port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    yield handler
    controller.stop()


@pytest.fixture
def amos_api(lab: LabCluster) -> Iterator[client.ApiClient]:
    """AMOS's own client (its watches hold connections of their own)."""
    with lab.api_client() as api:
        yield api


@pytest.fixture
def make_settings(namespace: str, inbox: Inbox, api_client: client.ApiClient) -> Iterator[Callable[..., Settings]]:
    """Settings scoped to the test namespace, with a state namespace of the test's own (deleted after)."""
    state = f"amos-state-{namespace}"[:63].rstrip("-")

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "namespaces": [namespace],
            "state_namespace": state,
            "model_provider": "offline",
            "leader_election": False,
            "verify_timeout_seconds": 60,
            "aggregation_window_seconds": 1.0,
            "smtp_host": "127.0.0.1",
            "smtp_port": inbox.port,
            "smtp_security": "none",
            "smtp_timeout_seconds": 5,
            "engineer_email": "oncall@example.com",
            "from_email": "amos@example.com",
        }
        return Settings(**(values | overrides))

    yield make
    try:
        client.CoreV1Api(api_client).delete_namespace(state, propagation_policy="Background")
    except ApiException as error:
        if error.status != 404:
            raise


FAST_OUTBOX = OutboxPolicy(initial_backoff_seconds=0.2, max_backoff_seconds=1.0, poll_seconds=0.5)


@pytest.fixture
def service_outboxes(amos_api: client.ApiClient) -> Iterator[Callable[[Settings], Outbox]]:
    """`service_outboxes(settings)`: a real outbox (cluster state + its channels) for one AMOS, fast retries,
    started now and stopped after the test."""
    made: list[Outbox] = []

    def make(settings: Settings) -> Outbox:
        outbox = Outbox.from_settings(amos_api, settings, identity="amos-test")
        outbox.policy = FAST_OUTBOX
        outbox.start()
        made.append(outbox)
        return outbox

    yield make
    for outbox in made:
        outbox.stop()
