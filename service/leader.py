"""Leader election on a coordination.k8s.io Lease: of several AMOS replicas, one remediates.

The algorithm is client-go's: the holder renews the Lease every `renew_seconds`;
another replica takes it over only once `renewTime + leaseDurationSeconds` has
passed. Every write carries the Lease's resourceVersion, so two replicas racing
for an expired Lease cannot both win. A holder that cannot renew before its own
lease would expire steps down first, so two leaders never act at once.

`still_leads()` is the fence every write checks: it trusts only a renewal younger than two thirds
of the lease, measured on the monotonic clock, so a leader that was paused (SIGSTOP, a long GC, a
frozen node) knows it lost the lease the instant it resumes, before its renewal thread runs again.
Every Lease call has a request timeout, so a frozen API server cannot hold the renewal thread, and a failed
one is reported to the client's observer (`core.api_errors`: one log line and a count in the service).
`term` is the Lease's transition count when this replica acquired it: journal entries carry it, and
a newer term's claim wins.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from core import api_errors

log = logging.getLogger("amos.leader")

REQUEST_TIMEOUT_SECONDS = 5.0
T = TypeVar("T")


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _as_lease(body: dict[str, Any]) -> client.V1Lease:
    """The client sends a dict body as it is; its stubs only admit the model, whose serialisation we avoid."""
    return cast(client.V1Lease, body)


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
        self._api = api
        self.coordination = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        self.clock = clock
        self.on_change = on_change
        self.is_leader = threading.Event()
        self._last_renewal: datetime | None = None
        self._renewed_at = float("-inf")  # time.monotonic() of the last successful acquire or renewal
        self.term = 0

    def still_leads(self) -> bool:
        """True only while this replica holds the Lease by a renewal recent enough to be trusted."""
        return self.is_leader.is_set() and time.monotonic() - self._renewed_at < self.lease_seconds * 2 / 3

    def step(self) -> bool:
        """Try once to acquire or renew the Lease; return whether this replica leads now."""
        now = self.clock()
        started = time.monotonic()
        try:
            leads = self._acquire_or_renew(now)
        except api_errors.CALL_FAILURES:  # reported by `_call`; lost a race (409), timed out, ...: try again
            leads = False
        except Exception as error:  # noqa: BLE001 - a bug here must not end the renewals
            log.warning("lease %s/%s: %s: %s", self.namespace, self.name, type(error).__name__, error)
            leads = False
        if leads:
            self._last_renewal = now
            self._renewed_at = started
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
            lease = self._call(self.coordination.read_namespaced_lease, self.name, self.namespace)
            assert lease.spec is not None, "a Lease read back from the API server has a spec"
            if lease.spec.holder_identity == self.identity:
                body = self._body(self.clock(), lease, holder=None)
                self._call(self.coordination.replace_namespaced_lease, self.name, self.namespace, _as_lease(body))
        except Exception:  # noqa: BLE001 - reported by `_call`; the lease then simply expires
            log.info("could not release lease %s/%s; it expires in %d s", self.namespace, self.name, self.lease_seconds)
        self._set(False)

    def _call(self, method: Callable[..., T], *args: Any) -> T:
        """One Lease call with its timeout; a failure is reported to the client's observer and raised."""
        try:
            return method(*args, _request_timeout=REQUEST_TIMEOUT_SECONDS)
        except Exception as error:
            api_errors.report(self._api, method.__name__, error)
            raise

    def _acquire_or_renew(self, now: datetime) -> bool:
        try:
            lease = self._call(self.coordination.read_namespaced_lease, self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = self._body(now, None, holder=self.identity)
            self._call(self.coordination.create_namespaced_lease, self.namespace, _as_lease(body))
            self.term = 0
            return True
        spec = lease.spec
        assert spec is not None, "a Lease read back from the API server has a spec"
        holder = spec.holder_identity
        renewed = spec.renew_time or spec.acquire_time
        expired = renewed is None or renewed + timedelta(seconds=spec.lease_duration_seconds or 0) < now
        if holder and holder != self.identity and not expired:
            return False
        body = self._body(now, lease, self.identity)
        self._call(self.coordination.replace_namespaced_lease, self.name, self.namespace, _as_lease(body))
        self.term = int(body["spec"]["leaseTransitions"])
        return True

    def _body(self, now: datetime, lease: client.V1Lease | None, holder: str | None) -> dict[str, Any]:
        spec: dict[str, Any] = {"leaseDurationSeconds": self.lease_seconds, "renewTime": _micro_time(now)}
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        transitions = 0
        acquired = now
        if lease is not None:
            assert lease.metadata is not None and lease.spec is not None, "a Lease read back has metadata and spec"
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
