"""Shared fixtures: one lab control plane per test session, one namespace per test.

The lab is started only when a test asks for it, so the fast unit tiers run
without it. Its processes die with the test run, even when a test fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from lab import build
from lab.cluster import LabCluster
from lab.workloads import create_namespace


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
    name = create_namespace(api_client, "".join(ch for ch in name if ch.isalnum() or ch == "-"),
                            {"amos.io/test": "true"})
    yield name
    client.CoreV1Api(api_client).delete_namespace(name, propagation_policy="Background")
