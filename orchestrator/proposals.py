"""Proposals waiting for a person: a validated fix, stored until it is approved, rejected or expires.

In approve mode AMOS diagnoses, validates the fix (policy guard and a server-side dry-run) and keeps
the typed actions here, with the spec generation they were made for. A proposal is a signed Secret
in the state namespace (its actions may carry env values; a forged one is never applied), named by
its id so `kubectl annotate ... amos.io/approve=<id>` and `python main.py approve <id>` find it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from kubernetes import client
from pydantic import BaseModel, Field, ValidationError

from core.actions import Diagnosis, ProposedAction
from core.config import Settings
from core.k8s import AMOS_MANAGER, MANAGED_BY_LABEL, RECORD_LABEL
from core.models import Incident, ObjectRef
from core.report import ActionRecord
from orchestrator.integrity import SIGNATURE_ANNOTATION, ForgedState, StateSigner
from orchestrator.state_api import WORKLOAD_NAMESPACE_LABEL, StoreError, call_json, read_json
from tools import objects

log = logging.getLogger(__name__)

PROPOSAL_KEY = "proposal.json"
STATE_LABEL = "amos.io/proposal-state"
APPROVE_ANNOTATION = "amos.io/approve"
REJECT_ANNOTATION = "amos.io/reject"


class ProposalState(StrEnum):
    PENDING = "pending"
    APPLYING = "applying"  # approved and being applied; left so by a stopped process, the next check settles it
    APPROVED = "approved"  # applied through the safety loop (its report says how that went)
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"  # the workload changed, or the fault is gone: a fresh diagnosis is due


class Proposal(BaseModel):
    id: str
    incident: Incident
    workload: ObjectRef
    generation: int | None  # the workload's generation then (annotating a Deployment moves it, so not compared)
    spec_digest: str  # the spec it was validated against; approval needs the same
    actions: list[ProposedAction]
    records: list[ActionRecord] = Field(default_factory=list)  # the dry-run records, with their diffs
    diagnosis: Diagnosis | None = None
    created_at: datetime
    expires_at: datetime
    state: ProposalState = ProposalState.PENDING
    decided_by: str = ""
    decided_at: datetime | None = None
    note: str = ""
    held_until: datetime | None = None  # an approval the guard rails held (deferred, skipped) is tried again then
    resource_version: str = Field("", exclude=True)  # as read from the API server: the precondition of a change


def new_proposal_id() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


def spec_digest(workload: dict[str, Any]) -> str:
    """What a proposal was made for: the whole spec (a Deployment's generation also moves with annotations)."""
    return hashlib.sha256(json.dumps(workload.get("spec") or {}, sort_keys=True).encode()).hexdigest()


def decision_of(workload: dict[str, Any], proposal_id: str) -> tuple[ProposalState, str] | None:
    """(approved or rejected, by whom) when the workload carries a person's decision on `proposal_id`.

    Who: the field manager that set the annotation (`kubectl annotate` writes `kubectl-annotate`;
    `python main.py approve` writes `amos-approve/<user>`), read from `managedFields`.
    """
    annotations = objects.meta(workload).get("annotations") or {}
    for key, state in ((REJECT_ANNOTATION, ProposalState.REJECTED), (APPROVE_ANNOTATION, ProposalState.APPROVED)):
        if str(annotations.get(key, "")).strip() == proposal_id:
            return state, _annotation_manager(workload, key)
    return None


def _annotation_manager(workload: dict[str, Any], key: str) -> str:
    for entry in objects.meta(workload).get("managedFields") or []:
        fields = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations") or {}
        if f"f:{key}" in fields:
            return str(entry.get("manager") or "unknown")
    return "unknown"


class ProposalChanged(StoreError):
    """Another process changed (or removed) the proposal since it was read: re-read it and decide again."""


class ProposalStore:
    """Proposals as signed Secrets; every change carries the resourceVersion it was read at, never overwrites."""

    def __init__(self, api_client: client.ApiClient, settings: Settings, signer: StateSigner) -> None:
        self.namespace = settings.store_namespace
        self._core = client.CoreV1Api(api_client)
        self.signer = signer

    def save(self, proposal: Proposal) -> Proposal:
        """Create a new proposal, or change one as it was read; the stored proposal, at its new resourceVersion.

        Raises ProposalChanged when someone else created, changed or deleted it first (a 409 or 404):
        two processes can then never both move one proposal out of PENDING.
        """
        text = proposal.model_dump_json()
        metadata: dict[str, Any] = {
            "name": proposal.id,
            "labels": {
                MANAGED_BY_LABEL: AMOS_MANAGER,
                RECORD_LABEL: "proposal",
                STATE_LABEL: proposal.state.value,
                WORKLOAD_NAMESPACE_LABEL: proposal.workload.namespace,
            },
            "annotations": {SIGNATURE_ANNOTATION: self.signer.sign(text), "amos.io/workload": str(proposal.workload)},
        }
        body = {
            "metadata": metadata,
            "type": "Opaque",
            "data": {PROPOSAL_KEY: base64.b64encode(text.encode()).decode()},
        }
        try:
            if proposal.resource_version:
                metadata["resourceVersion"] = proposal.resource_version
                stored = call_json(
                    "replace_namespaced_secret",
                    self._core.replace_namespaced_secret,
                    proposal.id,
                    self.namespace,
                    body,
                )
            else:
                stored = call_json(
                    "create_namespaced_secret", self._core.create_namespaced_secret, self.namespace, body
                )
        except StoreError as error:
            if error.status in (404, 409):
                raise ProposalChanged(f"save proposal {proposal.id}", error.__cause__ or error) from error
            raise
        return proposal.model_copy(update={"resource_version": str(objects.meta(stored).get("resourceVersion") or "")})

    def _parse(self, item: dict[str, Any]) -> Proposal | None:
        name = objects.meta(item).get("name")
        try:
            text = base64.b64decode((item.get("data") or {}).get(PROPOSAL_KEY) or "").decode()
            self.signer.check(
                text, (objects.meta(item).get("annotations") or {}).get(SIGNATURE_ANNOTATION), f"proposal {name}"
            )
            return Proposal.model_validate_json(text).model_copy(
                update={"resource_version": str(objects.meta(item).get("resourceVersion") or "")}
            )
        except ForgedState as forged:
            log.error("%s", forged)
        except (ValueError, ValidationError) as error:
            log.warning("proposal %s is unreadable: %s", name, error)
        return None

    def get(self, proposal_id: str) -> Proposal | None:
        found = read_json("read_namespaced_secret", self._core.read_namespaced_secret, proposal_id, self.namespace)
        return self._parse(found) if found is not None else None

    def list(self, *states: ProposalState) -> list[Proposal]:
        """The proposals in any of `states` (every proposal when none is given), oldest first, in one call."""
        selector = f"{MANAGED_BY_LABEL}={AMOS_MANAGER},{RECORD_LABEL}=proposal"
        if states:
            selector += f",{STATE_LABEL} in ({','.join(state.value for state in states)})"
        result = call_json(
            "list_namespaced_secret", self._core.list_namespaced_secret, self.namespace, label_selector=selector
        )
        found = [p for item in (result or {}).get("items") or [] if (p := self._parse(item)) is not None]
        return sorted(found, key=lambda p: p.created_at)
