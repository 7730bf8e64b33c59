"""Known-good marks: the monitors' "this revision is healthy" signals, persisted off the watch threads.

A watch thread must never wait on an API write, so signals go through a bounded queue to one
worker, which records them only while this replica leads (a standby's view is the same, and only
one replica writes AMOS's state). A full queue drops the oldest signal: the next healthy transition
of that workload marks it again.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from monitors.health import HealthyRevision
from orchestrator.knowngood_store import KnownGoodStore

log = logging.getLogger(__name__)

QUEUE_SIZE = 1024


class HealthyMarks:
    def __init__(self, store: KnownGoodStore, is_leader: Callable[[], bool]) -> None:
        self._store = store
        self._is_leader = is_leader
        self._queue: queue.Queue[HealthyRevision | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._thread: threading.Thread | None = None

    def __call__(self, signal: HealthyRevision) -> None:
        """The watcher's `on_healthy`: never blocks."""
        while True:
            try:
                self._queue.put_nowait(signal)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    pass

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="amos-known-good", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)

    def _run(self) -> None:
        while (signal := self._queue.get()) is not None:
            if not self._is_leader():
                continue
            try:
                self._store.mark_good(signal)
            except Exception:  # a missed mark only means a later inference; never stop the worker
                log.exception("could not record %s as known-good", signal.workload)
