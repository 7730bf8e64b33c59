"""Leader election against the lab's real API server: one holder, takeover after expiry or release."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from lab.workloads import wait_for
from service.leader import LeaderElector

pytestmark = pytest.mark.lab


def _pair(api: client.ApiClient, namespace: str, lease_seconds: int = 2) -> tuple[LeaderElector, LeaderElector]:
    def make(who: str) -> LeaderElector:
        return LeaderElector(api, namespace, "amos-leader", who, lease_seconds=lease_seconds, renew_seconds=0.2)

    return make("replica-a"), make("replica-b")


def test_exactly_one_leader_and_takeover_after_the_leader_dies(api_client: client.ApiClient, namespace: str) -> None:
    a, b = _pair(api_client, namespace)
    assert a.step() is True
    assert b.step() is False
    assert a.step() is True  # renewing keeps it
    # a "dies": it stops renewing. b must not take over before the lease expires...
    assert b.step() is False
    started = time.monotonic()
    wait_for(b.step, timeout=10, interval=0.2, what="b to take over")
    assert time.monotonic() - started >= 1.0
    lease = client.CoordinationV1Api(api_client).read_namespaced_lease("amos-leader", namespace)
    assert lease.spec is not None
    assert lease.spec.holder_identity == "replica-b" and lease.spec.lease_transitions == 1
    # ...and the old leader, coming back, does not think it still leads.
    assert a.step() is False and not a.is_leader.is_set()


def test_release_hands_over_at_once(api_client: client.ApiClient, namespace: str) -> None:
    a, b = _pair(api_client, namespace, lease_seconds=60)
    assert a.step() is True
    a.release()
    assert b.step() is True
