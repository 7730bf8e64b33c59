"""Snapshots kept durably: signed, compressed Secrets in the state namespace.

A snapshot is what a restore writes back, so it is stored where it is no easier to read than the
workload it came from (a Secret, since specs may hold literal credentials), signed so a forged one
is never written to a workload (`orchestrator.integrity`), and gzip-compressed so large workloads
fit the 1 MiB an object holds. The `last-applied-configuration` annotation (a second copy of the
spec, literals included) is not kept. Only the newest `snapshot_retention` are kept, plus any an
unfinished journal entry still needs.
"""

from __future__ import annotations

import base64
import builtins
import gzip
import logging
import uuid
from datetime import UTC, datetime

from kubernetes import client
from pydantic import ValidationError

from core.clock import parse_time
from core.config import Settings
from core.k8s import AMOS_MANAGER, MANAGED_BY_LABEL, RECORD_LABEL
from orchestrator.integrity import SIGNATURE_ANNOTATION, ForgedState, StateSigner
from orchestrator.records import SnapshotInfo
from orchestrator.state_api import (
    FINGERPRINT_LABEL,
    WORKLOAD_ANNOTATION,
    WORKLOAD_KIND_LABEL,
    WORKLOAD_NAMESPACE_LABEL,
    StoreError,
    call_json,
    read_json,
)
from tools import objects
from tools.snapshot import Snapshot

log = logging.getLogger(__name__)

TAKEN_AT_ANNOTATION = "amos.io/taken-at"
TRIMMED_ANNOTATION = "amos.io/trimmed"
SNAPSHOT_KEY = "snapshot.json.gz"
MAX_STORED_BYTES = 900_000  # an object holds at most 1 MiB, base64 included


class SnapshotTooLarge(Exception):
    """Even compressed and without old revisions, the snapshot does not fit in one object."""


def _packed(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode(), mtime=0)).decode()


class SnapshotStore:
    """Saves, loads (checked), lists and prunes snapshots."""

    def __init__(self, api_client: client.ApiClient, settings: Settings, signer: StateSigner) -> None:
        self.namespace = settings.store_namespace
        self._core = client.CoreV1Api(api_client)
        self.signer = signer

    def save(self, snapshot: Snapshot, fingerprint: str) -> Snapshot:
        """Store `snapshot`; returns it with the id it is stored under. Raises SnapshotTooLarge, StoreError."""
        taken = snapshot.taken_at.astimezone(UTC)
        name = f"amos-snapshot-{fingerprint}-{taken:%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
        stored = snapshot.model_copy(
            update={
                "id": name,
                "workload": objects.without_last_applied(snapshot.workload),
                "replicasets": [objects.without_last_applied(rs) for rs in snapshot.replicasets],
            }
        )
        text, packed, trimmed = self._fit(stored)
        annotations = {
            WORKLOAD_ANNOTATION: f"{snapshot.target.kind}/{snapshot.target.namespace}/{snapshot.target.name}",
            TAKEN_AT_ANNOTATION: taken.isoformat(),
            "amos.io/objects": ", ".join(stored.objects())[:2000],
            SIGNATURE_ANNOTATION: self.signer.sign(text),
        }
        if trimmed:
            annotations[TRIMMED_ANNOTATION] = f"{trimmed} oldest revision(s) left out to fit in one object"
        labels = {
            MANAGED_BY_LABEL: AMOS_MANAGER,
            RECORD_LABEL: "snapshot",
            FINGERPRINT_LABEL: fingerprint,
            WORKLOAD_NAMESPACE_LABEL: snapshot.target.namespace,
            WORKLOAD_KIND_LABEL: snapshot.target.kind,
        }
        body = {
            "metadata": {"name": name, "labels": labels, "annotations": annotations},
            "type": "Opaque",
            "data": {SNAPSHOT_KEY: packed},
        }
        call_json("create_namespaced_secret", self._core.create_namespaced_secret, self.namespace, body)
        return stored

    @staticmethod
    def _fit(snapshot: Snapshot) -> tuple[str, str, int]:
        """JSON and packed form, leaving out the oldest revisions (never the workload) if it is too big."""
        trimmed, current = 0, snapshot
        text = current.model_dump_json()
        packed = _packed(text)
        while len(packed) > MAX_STORED_BYTES and (current.replicasets or current.controller_revisions):
            field = "replicasets" if current.replicasets else "controller_revisions"
            current = current.model_copy(update={field: getattr(current, field)[1:]})
            trimmed += 1
            text = current.model_dump_json()
            packed = _packed(text)
        if len(packed) > MAX_STORED_BYTES:
            raise SnapshotTooLarge(
                f"the snapshot of {snapshot.target} needs {len(packed)} bytes even compressed, more than one "
                "object holds; AMOS cannot take a snapshot, so it changes nothing"
            )
        return text, packed, trimmed

    def load(self, snapshot_id: str) -> Snapshot | None:
        """The snapshot, checked; None when it is gone, unreadable or fails its integrity check (logged)."""
        found = read_json("read_namespaced_secret", self._core.read_namespaced_secret, snapshot_id, self.namespace)
        if found is None:
            return None
        annotations = objects.meta(found).get("annotations") or {}
        try:
            text = gzip.decompress(base64.b64decode((found.get("data") or {}).get(SNAPSHOT_KEY) or "")).decode()
            self.signer.check(text, annotations.get(SIGNATURE_ANNOTATION), f"snapshot {snapshot_id}")
            return Snapshot.model_validate_json(text)
        except ForgedState as forged:
            log.error("%s; a person should look at it", forged)
        except (OSError, ValueError, ValidationError) as error:
            log.warning("snapshot %s is unreadable: %s", snapshot_id, error)
        return None

    def list(self) -> list[SnapshotInfo]:
        """Stored snapshots, newest first."""
        result = call_json(
            "list_namespaced_secret",
            self._core.list_namespaced_secret,
            self.namespace,
            label_selector=f"{MANAGED_BY_LABEL}={AMOS_MANAGER},{RECORD_LABEL}=snapshot",
        )
        infos = []
        for item in (result or {}).get("items") or []:
            metadata = item.get("metadata") or {}
            annotations = metadata.get("annotations") or {}
            taken = parse_time(annotations.get(TAKEN_AT_ANNOTATION)) or parse_time(metadata.get("creationTimestamp"))
            infos.append(
                SnapshotInfo(
                    id=metadata["name"],
                    fingerprint=(metadata.get("labels") or {}).get(FINGERPRINT_LABEL, ""),
                    workload=annotations.get(WORKLOAD_ANNOTATION, ""),
                    taken_at=taken or datetime.min.replace(tzinfo=UTC),
                )
            )
        return sorted(infos, key=lambda info: (info.taken_at, info.id), reverse=True)

    def prune(self, keep: int, protect: set[str]) -> builtins.list[str]:
        """Keep `keep` snapshots: the protected ones (never deleted) count first, then the newest."""
        infos = self.list()
        room = max(0, keep - sum(1 for info in infos if info.id in protect))
        deleted = []
        for info in infos:
            if info.id in protect:
                continue
            if room > 0:
                room -= 1
                continue
            try:
                call_json("delete_namespaced_secret", self._core.delete_namespaced_secret, info.id, self.namespace)
                deleted.append(info.id)
            except StoreError as error:
                if error.status != 404:
                    raise
        return deleted
