"""The cluster-wide action budget and circuit breaker, kept in one ConfigMap a person can read and edit.

Every applied action is counted there, so the budget holds across restarts and replicas. When the
budget is used up the breaker opens, and AMOS only proposes until a person resets it (delete the
ConfigMap, or set `data.state` to `closed`; its README key says so).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client

from core.clock import Clock, parse_time, utc_now
from core.config import Settings
from core.k8s import AMOS_MANAGER, MANAGED_BY_LABEL, RECORD_LABEL
from orchestrator.records import BreakerState
from orchestrator.state_api import StoreError, call_json, read_json
from tools.policy import HOUR_SECONDS, ActionBudget

log = logging.getLogger(__name__)

BREAKER_NAME = "amos-circuit-breaker"
MAX_WRITE_RETRIES = 5


class ClusterBudget(ActionBudget):
    """The hourly action budget every session shares (the policy guard counts against it), persisted in
    the breaker ConfigMap so it survives restarts. Using it up opens the circuit breaker."""

    def __init__(self, api_client: client.ApiClient, settings: Settings, clock: Clock = utc_now) -> None:
        super().__init__(settings.actions_per_hour, clock=lambda: clock().timestamp())
        self.namespace = settings.store_namespace
        self._core = client.CoreV1Api(api_client)
        self._wall = clock
        self._state = BreakerState()
        self._guard = threading.Lock()

    def _prune(self, actions: list[datetime]) -> list[datetime]:
        horizon = self._wall() - timedelta(seconds=HOUR_SECONDS)
        return sorted(t for t in actions if t > horizon)

    def sync(self) -> BreakerState:
        """Re-read the breaker (a person may have reset it) and drop actions older than an hour."""

        def refresh(state: BreakerState, reset: bool) -> None:
            if reset:
                log.warning("the circuit breaker was reset by a person; the action budget starts afresh")
                state.actions, state.opened_at, state.reason = [], None, ""
            state.actions = self._prune(state.actions)

        try:
            state = self.update(refresh)
        except Exception:
            log.exception("could not read the circuit breaker; keeping the last known state")
            return self.state
        with self._guard:
            self._state = state
        return state

    @property
    def state(self) -> BreakerState:
        with self._guard:
            return self._state.model_copy(deep=True)

    def used(self) -> int:
        with self._guard:
            self._state.actions = self._prune(self._state.actions)
            return len(self._state.actions)

    def times(self) -> list[float]:
        with self._guard:
            return [t.timestamp() for t in self._prune(self._state.actions)]

    def note(self) -> None:
        """Count one action now, in memory and in the cluster; the breaker opens when the budget is used up."""
        now = self._wall()
        per_hour = self.per_hour

        def add(state: BreakerState, reset: bool) -> None:
            if reset:
                state.actions, state.opened_at, state.reason = [], None, ""
            state.actions = self._prune(state.actions + [now])
            if len(state.actions) >= per_hour and state.state != "open":
                state.state, state.opened_at = "open", now
                state.reason = f"the action budget of {per_hour} per hour was used up"
                log.warning("circuit breaker opened: %s", state.reason)

        with self._guard:
            self._state.actions = self._prune(self._state.actions + [now])
        try:
            state = self.update(add)
        except Exception:
            log.exception("could not record an action in the circuit breaker")
            return
        with self._guard:
            self._state = state

    def trip(self, reason: str) -> BreakerState:
        """Open the breaker (it stays open until a person resets it)."""
        now = self._wall()

        def open_it(state: BreakerState, reset: bool) -> None:
            if state.state != "open":
                state.state, state.opened_at, state.reason = "open", now, reason

        try:
            state = self.update(open_it)
        except Exception:
            log.exception("could not open the circuit breaker")
            return self.state
        with self._guard:
            self._state = state
        return state

    # --- the ConfigMap ---------------------------------------------------------------------------------

    def _read(self) -> dict[str, Any] | None:
        return read_json(
            "read_namespaced_config_map", self._core.read_namespaced_config_map, BREAKER_NAME, self.namespace
        )

    def read(self) -> tuple[BreakerState, bool]:
        """The breaker state, and whether a person reset it (state set to closed while it was open)."""
        return self._parse_breaker(self._read())

    @staticmethod
    def _parse_breaker(found: dict[str, Any] | None) -> tuple[BreakerState, bool]:
        if found is None:
            return BreakerState(), False
        data = found.get("data") or {}
        try:
            actions = [t for t in (parse_time(str(v)) for v in json.loads(data.get("actions") or "[]")) if t]
        except (ValueError, TypeError):
            actions = []
        state = BreakerState(
            state="open" if data.get("state", "closed").strip().lower() == "open" else "closed",
            reason=data.get("reason", ""),
            opened_at=parse_time(data.get("opened-at")),
            actions=actions,
        )
        reset = state.state == "closed" and state.opened_at is not None
        return state, reset

    def update(self, mutate: Callable[[BreakerState, bool], None]) -> BreakerState:
        """Read-modify-write the breaker; `mutate(state, reset_by_person)`."""
        for _ in range(MAX_WRITE_RETRIES):
            found = self._read()
            state, reset = self._parse_breaker(found)
            mutate(state, reset)
            data = {
                "state": state.state,
                "reason": state.reason,
                "opened-at": state.opened_at.isoformat() if state.opened_at else "",
                "actions": json.dumps([t.isoformat() for t in state.actions]),
                "README": BREAKER_README.format(namespace=self.namespace, name=BREAKER_NAME),
            }
            try:
                if found is None:
                    body = {
                        "metadata": {
                            "name": BREAKER_NAME,
                            "labels": {MANAGED_BY_LABEL: AMOS_MANAGER, RECORD_LABEL: "breaker"},
                        },
                        "data": data,
                    }
                    call_json(
                        "create_namespaced_config_map",
                        self._core.create_namespaced_config_map,
                        self.namespace,
                        body,
                        field_manager=AMOS_MANAGER,
                    )
                else:
                    found["data"] = data
                    call_json(
                        "replace_namespaced_config_map",
                        self._core.replace_namespaced_config_map,
                        BREAKER_NAME,
                        self.namespace,
                        found,
                        field_manager=AMOS_MANAGER,
                    )
                return state
            except StoreError as error:
                if error.status in (404, 409):
                    continue
                raise
        raise StoreError("update of the circuit breaker", RuntimeError("it kept changing"))


BREAKER_README = """\
AMOS circuit breaker and cluster-wide action budget.
state: closed = AMOS may act; open = AMOS only diagnoses and recommends, it changes nothing.
It opens by itself when the hourly action budget (actions_per_hour) is used up, and stays
open until a person resets it. To reset it, either delete this ConfigMap:
  kubectl -n {namespace} delete configmap {name}
or set the state back to closed:
  kubectl -n {namespace} patch configmap {name} --type merge -p '{{"data":{{"state":"closed"}}}}'
Both forget the counted actions, so the full budget is available again.
"""
