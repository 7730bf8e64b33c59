"""Shared fixtures: one lab control plane per test session, one namespace per test.

The lab is started only when a test asks for it, so the fast unit tiers run
without it. Its processes die with the test run, even when a test fails.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from lab import build
from lab.cluster import LabCluster


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
    core = client.CoreV1Api(api_client)
    name = f"t-{request.node.name[:40].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:5]}"
    name = "".join(ch for ch in name if ch.isalnum() or ch == "-")
    core.create_namespace({"metadata": {"name": name, "labels": {"amos.io/test": "true"}}})
    deadline = time.monotonic() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    yield name
    core.delete_namespace(name, propagation_policy="Background")
