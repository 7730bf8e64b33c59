"""`adk web` writes only while it holds the service's leader Lease: one actor per cluster at a time.

Each write `adk web` makes (a fix, an approved proposal applied) takes the Lease the service elects
its leader on (`settings.lease_name` in the state namespace, as `service.app` does), with `adk web`'s
own identity, through the same `LeaderElector`; a thread keeps renewing it while the write runs, and
it is given up at the end, so the service can take over at once. The orchestrator's fence is
`still_leads`, so a write that outlasts the Lease stops. While another holder's Lease is live (the
service runs), nothing is taken, and the refusal names that holder.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from service.leader import REQUEST_TIMEOUT_SECONDS, LeaderElector


class LeaseTaken(Exception):
    """The leader Lease could not be taken: another actor holds it (`holder`; None when it cannot be said)."""

    def __init__(self, holder: str | None, lease: str) -> None:
        self.holder, self.lease = holder, lease
        super().__init__(f"{holder or 'nobody known'} holds the lease {lease}")


class WriteLease:
    """The leader Lease held for as long as any write of this process runs (renewed on a thread)."""

    def __init__(self, elector: LeaderElector) -> None:
        self.elector = elector
        self._lock = threading.Lock()
        self._writes = 0
        self._stop = threading.Event()
        self._renewing: threading.Thread | None = None

    @property
    def name(self) -> str:
        return f"{self.elector.namespace}/{self.elector.name}"

    def still_leads(self) -> bool:
        return self.elector.still_leads()

    def term(self) -> int:
        return self.elector.term

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the Lease for the block; raises LeaseTaken (holding nothing) when another holder's is live."""
        self._acquire()
        try:
            yield
        finally:
            self._release()

    def _acquire(self) -> None:
        with self._lock:
            if self._writes == 0:
                if not self.elector.step():
                    raise LeaseTaken(self._holder(), self.name)
                self._stop = threading.Event()
                self._renewing = threading.Thread(
                    target=self.elector.run, args=(self._stop,), name="adk-web-lease", daemon=True
                )
                self._renewing.start()
            self._writes += 1

    def _release(self) -> None:
        """The last write running stops the renewals; `LeaderElector.run` then gives the Lease up."""
        with self._lock:
            self._writes -= 1
            if self._writes or self._renewing is None:
                return
            self._stop.set()
            self._renewing.join()  # under the lock: a new write must not take the Lease while it is being released
            self._renewing = None

    def _holder(self) -> str | None:
        """Who holds the Lease now, as it says (None when nobody does, or it cannot be read)."""
        try:
            lease = self.elector.coordination.read_namespaced_lease(
                self.elector.name, self.elector.namespace, _request_timeout=REQUEST_TIMEOUT_SECONDS
            )
        except Exception:  # noqa: BLE001 - the refusal still stands; it only cannot name the holder
            return None
        holder = lease.spec.holder_identity if lease.spec is not None else None
        return str(holder) if holder else None
