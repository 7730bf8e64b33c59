"""Leader election on a coordination.k8s.io Lease: of several AMOS replicas, one remediates.

The algorithm is client-go's: the holder renews the Lease every `renew_seconds`;
another replica takes it over only once `renewTime + leaseDurationSeconds` has
passed. Every write carries the Lease's resourceVersion, so two replicas racing
for an expired Lease cannot both win. A holder that cannot renew before its own
lease would expire steps down first, so two leaders never act at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("amos.leader")


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_seconds: int = 15,
        renew_seconds: float = 5.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self.clock = clock
        self.on_change = on_change
        self.is_leader = threading.Event()
        self._last_renewal: datetime | None = None

    def step(self) -> bool:
        """Try once to acquire or renew the Lease; return whether this replica leads now."""
        now = self.clock()
        try:
            leads = self._acquire_or_renew(now)
        except ApiException as error:
            if error.status not in (409, 404):
                log.warning("lease %s/%s: %s %s", self.namespace, self.name, error.status, error.reason)
            leads = False
        if leads:
            self._last_renewal = now
        elif self.is_leader.is_set() and self._last_renewal is not None:
            # Keep leading only while our last successful renewal is still valid.
            leads = now - self._last_renewal < timedelta(seconds=self.lease_seconds * 2 / 3)
        self._set(leads)
        return leads

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(self.renew_seconds)
        self.release()

    def release(self) -> None:
        """Give the Lease up on a clean shutdown, so a standby takes over at once."""
        if not self.is_leader.is_set():
            return
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                body = self._body(self.clock(), lease, holder=None)
                self.coordination.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as error:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, error.reason)
        self._set(False)

    def _acquire_or_renew(self, now: datetime) -> bool:
        try:
            lease = self.coordination.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            self.coordination.create_namespaced_lease(self.namespace, self._body(now, None, holder=self.identity))
            return True
        spec = lease.spec
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or renewed + timedelta(seconds=spec.lease_duration_seconds or 0) < now
        if holder and holder != self.identity and not expired:
            return False
        self.coordination.replace_namespaced_lease(self.name, self.namespace, self._body(now, lease, self.identity))
        return True

    def _body(self, now: datetime, lease: client.V1Lease | None, holder: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"leaseDurationSeconds": self.lease_seconds, "renewTime": _micro_time(now)}
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        transitions = 0
        acquired = now
        if lease is not None:
            metadata["resourceVersion"] = lease.metadata.resource_version
            transitions = lease.spec.lease_transitions or 0
            if lease.spec.holder_identity == holder and lease.spec.acquire_time:
                acquired = lease.spec.acquire_time
            elif holder is not None:
                transitions += 1
        spec.update(holderIdentity=holder, acquireTime=_micro_time(acquired), leaseTransitions=transitions)
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def _set(self, leads: bool) -> None:
        if leads == self.is_leader.is_set():
            return
        if leads:
            self.is_leader.set()
        else:
            self.is_leader.clear()
        log.info("%s %s the lease %s/%s", self.identity, "acquired" if leads else "lost", self.namespace, self.name)
        if self.on_change:
            self.on_change(leads)
