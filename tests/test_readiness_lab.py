"""/readyz notices a stalled watch on the lab's real API server: frozen with SIGSTOP, the API server keeps
every watch connection open and silent, and readiness fails naming the stream; resumed, AMOS is ready again.

The watches here last 2 s, so a stream silent for three of them (6 s) counts as stalled; a quiet but healthy
stream restarts every 2 s, which the readiness check before the freeze shows."""

from __future__ import annotations

import os
import signal
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest
from kubernetes import client

from core.config import Settings
from lab.cluster import LabCluster, free_port
from lab.workloads import wait_for
from service.app import AmosApp

pytestmark = pytest.mark.lab


def readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def stalled(port: int, namespace: str) -> str | None:
    """/readyz's body once it fails naming the test namespace's pod watch as stalled."""
    code, body = readyz(port)
    return body if code == 503 and f"Pod watch ({namespace}): stalled" in body else None


def test_a_watch_stalled_on_a_frozen_api_server_fails_readiness_until_it_resumes(
    lab: LabCluster, amos_api: client.ApiClient, namespace: str, make_settings: Callable[..., Settings]
) -> None:
    port = free_port()
    settings = make_settings(http_port=port, http_bind_address="127.0.0.1")
    app = AmosApp(settings, amos_api, identity="readiness", watch_timeout_seconds=2)
    app.start()
    apiserver = lab.processes["kube-apiserver"].pid
    try:
        assert wait_for(lambda: readyz(port) == (200, "ok\n"), timeout=60, what="ready after the first sync")
        os.kill(apiserver, signal.SIGSTOP)
        try:
            body = wait_for(lambda: stalled(port, namespace), timeout=60, what="/readyz to name the stalled pod watch")
        finally:
            os.kill(apiserver, signal.SIGCONT)
        assert body.startswith("not ready\n")
        assert f"Deployment watch ({namespace}): stalled, no list, event or bookmark for" in body
        assert wait_for(lambda: readyz(port) == (200, "ok\n"), timeout=120, what="ready again after the resume")
    finally:
        os.kill(apiserver, signal.SIGCONT)
        app.stop(grace_seconds=10)
