"""`adk web`'s way into the orchestrator: a fix chosen there, and a decision on a proposal, go through its safety loop.

The hook `agents.app.SubmitFix` receives the typed actions a diagnosis proposed; here they become a
requested fix (`Orchestrator.apply_actions`): guard rails, ledger, snapshot, journal, the policy
guard and fences on every write, verification, restore on failure, Events and a report through
the durable outbox. The `agents.web_proposals.ProposalDesk` lists pending proposals (reads only)
and writes a decision the way `python main.py approve` does (`service.approving`: the annotation
as the caller), then has the orchestrator re-validate and apply that proposal at once.

`adk web` acts only while it holds the service's leader Lease (`service.adk_lease`), so it is never a
second actor: with the service running, a fix is refused naming it, and an approval is left for it to apply.
The cluster connection is made on first use; the orchestrator and the outbox on the first write.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from kubernetes import client

from agents.web_proposals import PendingProposal
from core.actions import ProposedAction
from core.config import Settings
from core.models import ObjectRef
from core.report import IncidentReport
from notifications.outbox import Outbox
from orchestrator.events import replica_identity
from orchestrator.orchestrator import Orchestrator
from service.adk_lease import LeaseTaken, WriteLease
from service.approving import DecisionRefused, annotate_decision, caller, pending_proposals
from service.kube import connect
from service.leader import LeaderElector
from service.oneshot import detect
from service.wiring import build_orchestrator

REQUESTED_BY = "adk web"
IDENTITY = "adk-web"


def service_acts(taken: LeaseTaken) -> str:
    """Why `adk web` does not write: the service (or another `adk web`) is the one actor in this cluster."""
    if taken.holder is None:
        return f"adk web could not take the lease {taken.lease} (the API server refused or failed; see the log)"
    return f"the AMOS service {taken.holder} holds the lease {taken.lease} and acts in this cluster"


def outcome_line(report: IncidentReport | None, ref: ObjectRef) -> str:
    """One line for the person in `adk web`: how the orchestrator's run ended, as its report says."""
    if report is None:
        return f"nothing was done for {ref}: the guard rails deferred or skipped it (see its Events)"
    line = f"{report.outcome.value}: {ref}"
    if report.escalation_reason:
        line += f": {report.escalation_reason}"
    return line + "; the report was sent through the outbox"


class OrchestratorFixes:
    """The `SubmitFix` hook of `adk web`: one orchestrator per process, made lazily."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._api: client.ApiClient | None = None
        self._outbox: Outbox | None = None
        self._orchestrator: Orchestrator | None = None
        self._lease: WriteLease | None = None
        self._lock = threading.Lock()

    def api(self) -> client.ApiClient:
        """The connection, with the credentials of the person running `adk web` (made once)."""
        with self._lock:
            if self._api is None:
                self._api = connect(self.settings.kubeconfig)
            return self._api

    def orchestrator(self) -> Orchestrator:
        """The orchestrator and its outbox (made on the first write; the state namespace ensured).

        Every write it makes is fenced by the leader Lease `lease()` holds (and journaled in its term).
        """
        api = self.api()
        with self._lock:
            if self._orchestrator is None:
                identity = f"{IDENTITY}/{caller(api)}@{replica_identity()}"[:128]
                lease = WriteLease(
                    LeaderElector(api, self.settings.store_namespace, self.settings.lease_name, identity)
                )
                self._outbox = Outbox.from_settings(api, self.settings, identity=identity)
                self._outbox.start()
                self._orchestrator = build_orchestrator(
                    self.settings,
                    api,
                    self._outbox,
                    identity=identity,
                    fault_present=self._fault_present,
                    still_leader=lease.still_leads,
                    term=lease.term,
                )
                self._orchestrator.store.ensure_namespace()
                self._lease = lease
            return self._orchestrator

    def lease(self) -> WriteLease:
        """The leader Lease every write of this process holds while it runs."""
        self.orchestrator()
        assert self._lease is not None, "made with the orchestrator"
        return self._lease

    def _fault_present(self, ref: ObjectRef) -> bool:
        """Whether `ref` has an open fault now (an approval re-validates this), from one watch of its namespace."""
        scoped = self.settings.model_copy(update={"namespaces": [ref.namespace]})
        return bool(detect(scoped, self.api(), {ref}))

    def close(self) -> None:
        """Hand the reports that are due to their channels (bounded), then stop the outbox's delivery threads;
        what is still left (a channel down) stays stored for the next AMOS process that runs."""
        with self._lock:
            if self._outbox is not None:
                self._outbox.drain(timeout=self.settings.smtp_timeout_seconds + 5)
                self._outbox.stop()

    def __call__(self, incident_ref: ObjectRef, actions: Sequence[ProposedAction]) -> str:
        orchestrator = self.orchestrator()
        try:
            with self.lease().holding():
                report = orchestrator.apply_actions(
                    incident_ref, actions, requested_by=REQUESTED_BY, reason="a fix chosen in an adk web session"
                )
        except LeaseTaken as taken:
            return (
                f"refused: {service_acts(taken)}; approve its proposal with kubectl annotate / python main.py "
                f"approve, or stop it to act from adk web; nothing was applied to {incident_ref}"
            )
        return outcome_line(report, incident_ref)


class OrchestratorProposals:
    """The `ProposalDesk` of `adk web`: pending proposals listed with reads only; a decision as `main.py approve`."""

    def __init__(self, fixes: OrchestratorFixes) -> None:
        self.fixes = fixes
        self.settings = fixes.settings

    def pending(self, namespace: str) -> list[PendingProposal]:
        return [
            PendingProposal(
                id=proposal.id,
                workload=proposal.workload,
                created_at=proposal.created_at,
                expires_at=proposal.expires_at,
                changes=[action.summary() for action in proposal.actions],
                diffs=[record.diff for record in proposal.records if record.diff],
            )
            for proposal in pending_proposals(self.settings, self.fixes.api(), namespace)
        ]

    def decide(self, proposal_id: str, namespace: str, *, approve: bool) -> str:
        try:
            decision = annotate_decision(
                self.settings, self.fixes.api(), proposal_id, approve=approve, namespace=namespace
            )
        except DecisionRefused as refused:
            return f"refused: {refused}"
        verb = "approved" if decision.approved else "rejected"
        said = f"{verb} {proposal_id} on {decision.workload} as {decision.by}"
        orchestrator = self.fixes.orchestrator()
        try:
            with self.fixes.lease().holding():
                report = orchestrator.approvals.check_one(proposal_id)
        except LeaseTaken as taken:
            return f"{said}; {service_acts(taken)}: it acts on the decision at its next check of the proposal"
        if report is None:
            return f"{said}; AMOS acts on it at its next check of the proposal"
        return f"{said}; {outcome_line(report, decision.workload)}"
