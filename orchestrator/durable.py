"""The state writes an attempt depends on, made only by the leader and retried through API blips.

A lost Lease or a newer leader term owning the journal entry stops the writer at once and is never
retried; an API server that does not answer (a restart, a timeout, a 5xx) is retried with back-off up
to a deadline, so a short outage mid-attempt is ridden out instead of leaving the attempt half done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from core.models import ObjectRef
from orchestrator.attempt_run import AttemptRun
from orchestrator.fencing import LostLeadership, StillLeader
from orchestrator.records import Phase
from orchestrator.state_api import passing
from orchestrator.store import JournalClaimed, StateStore
from tools.cluster import ApiCallError, ClusterAccess

T = TypeVar("T")
STATE_WRITE_DEADLINE_SECONDS = 60.0


def _retryable(error: BaseException) -> bool:
    """API blips are retried; a lost Lease, a newer owner or a refusal by the API server is not."""
    return not isinstance(error, LostLeadership | JournalClaimed) and passing(error)


class DurableState:
    """Leader-checked, retried writes of the journal and the records, and the workload read the same way."""

    def __init__(
        self,
        access: ClusterAccess,
        store: StateStore,
        *,
        still_leader: StillLeader,
        identity: str,
        term: Callable[[], int],
        deadline_seconds: float = STATE_WRITE_DEADLINE_SECONDS,
    ) -> None:
        self.access = access
        self.store = store
        self.still_leader = still_leader
        self.identity = identity
        self.term = term
        self._deadline = deadline_seconds

    def durably(self, what: str, write: Callable[[], T]) -> T:
        """Run a state write as the leader, retried with back-off through API blips up to a deadline."""
        for try_ in Retrying(
            retry=retry_if_exception(_retryable),
            wait=wait_exponential(multiplier=0.5, max=8),
            stop=stop_after_delay(self._deadline),
            reraise=True,
        ):
            with try_:
                if not self.still_leader():
                    raise LostLeadership(f"{what}: this replica no longer holds the Lease")
                return write()
        raise AssertionError("unreachable")  # Retrying either returns, or re-raises the last error

    def journal(self, run: AttemptRun, phase: Phase) -> None:
        """Write `phase` to the run's journal entry, owned by this replica in its leader term."""
        run.journal.phase = phase
        run.journal.owner, run.journal.term = self.identity, self.term()
        self.durably(f"journal {phase.value}", lambda: self.store.write_journal(run.journal))

    def read(self, ref: ObjectRef) -> dict[str, Any] | None:
        """The workload now (None when it is gone), read through API blips like every state write."""
        return self.durably(f"read {ref}", lambda: self._read_once(ref))

    def _read_once(self, ref: ObjectRef) -> dict[str, Any] | None:
        try:
            obj = self.access.get(ref.kind, ref.namespace, ref.name)
        except ApiCallError as error:
            if error.status == 404:
                return None
            raise
        obj.setdefault("kind", ref.kind)
        return obj
