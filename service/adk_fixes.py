"""`adk web` with writes enabled: a fix chosen there runs through the orchestrator's whole safety loop.

The hook `agents.app.SubmitFix` receives the typed actions a diagnosis proposed; here they become a
requested fix (`Orchestrator.apply_actions`): guard rails, ledger, snapshot, journal, the policy
guard and fences on every write, verification, restore on failure, Events and a report through
the durable outbox. The cluster connection and the outbox are made on the first fix, not at import.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from core.actions import ProposedAction
from core.config import Settings
from core.models import ObjectRef
from notifications.outbox import Outbox
from orchestrator.orchestrator import Orchestrator
from service.kube import connect
from service.wiring import build_orchestrator

REQUESTED_BY = "adk web"


class OrchestratorFixes:
    """The `SubmitFix` hook of `adk web`: one orchestrator per process, made lazily."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._orchestrator: Orchestrator | None = None
        self._lock = threading.Lock()

    def _get(self) -> Orchestrator:
        with self._lock:
            if self._orchestrator is None:
                api = connect(self.settings.kubeconfig)
                outbox = Outbox.from_settings(api, self.settings, identity="adk-web")
                outbox.start()
                self._orchestrator = build_orchestrator(self.settings, api, outbox, identity="adk-web")
                self._orchestrator.store.ensure_namespace()
            return self._orchestrator

    def __call__(self, incident_ref: ObjectRef, actions: Sequence[ProposedAction]) -> str:
        report = self._get().apply_actions(
            incident_ref, actions, requested_by=REQUESTED_BY, reason="a fix chosen in an adk web session"
        )
        if report is None:
            return f"nothing was done for {incident_ref}: the guard rails deferred or skipped it (see its Events)"
        line = f"{report.outcome.value}: {incident_ref}"
        if report.escalation_reason:
            line += f": {report.escalation_reason}"
        return line + "; the report was sent through the outbox"
