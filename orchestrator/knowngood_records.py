"""Known-good records kept in the cluster: one Secret per workload in `settings.store_namespace`.

A Secret, not a ConfigMap: a CronJob's recorded job templates may hold literal env values. Each
record is JSON under one key, written with its resourceVersion (a concurrent writer gets 409 and
re-reads), bounded in bytes (the oldest job templates go first), and signed when a signer is given:
a recorded job template is written back to a CronJob, so a record altered outside AMOS is not used.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from kubernetes import client
from pydantic import ValidationError

from core.k8s import AMOS_MANAGER, MANAGED_BY_LABEL, RECORD_LABEL
from core.models import ObjectRef
from orchestrator.knowngood import KnownGoodRecord
from orchestrator.state_api import WORKLOAD_NAMESPACE_LABEL, StoreError, call_json, read_json
from tools import objects
from tools.cluster import FIELD_MANAGER

log = logging.getLogger(__name__)

RECORD_KEY = "record.json"
SIGNATURE_ANNOTATION = "amos.io/signature"
RECORD_LABELS = {MANAGED_BY_LABEL: AMOS_MANAGER, RECORD_LABEL: "knowngood"}
WORKLOAD_ANNOTATION = "amos.io/workload"
MAX_RECORD_BYTES = 256 * 1024
MAX_WRITE_RETRIES = 5


class Signer(Protocol):
    """`orchestrator.integrity.StateSigner`: an HMAC over a record, so a record altered outside AMOS is not used."""

    def sign(self, payload: str) -> str: ...

    def check(self, payload: str, signature: str | None, what: str) -> None:
        """Raise when `signature` is not the HMAC of `payload`."""
        ...


def record_name(ref: ObjectRef) -> str:
    key = f"{ref.kind}/{ref.namespace}/{ref.name}"
    return f"amos-knowngood-{hashlib.sha256(key.encode()).hexdigest()[:20]}"


class KnownGoodRecords:
    """Reads and conditionally rewrites the known-good record of a workload."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        *,
        signer: Signer | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.namespace = namespace
        self._core = client.CoreV1Api(api_client)
        self._signer = signer
        self._clock = clock

    def record(self, ref: ObjectRef) -> KnownGoodRecord:
        """What is recorded for `ref` (an empty record when nothing is)."""
        found = self._read(record_name(ref))
        return self._parse(found, ref) if found is not None else KnownGoodRecord(workload=ref)

    def current(self, ref: ObjectRef, workload: dict[str, Any]) -> KnownGoodRecord:
        """The record of this incarnation of the workload: one kept for a deleted namesake is not its history."""
        record = self.record(ref)
        uid = str(objects.meta(workload).get("uid") or "")
        return record if not record.uid or record.uid == uid else KnownGoodRecord(workload=ref, uid=uid)

    def update(
        self, ref: ObjectRef, workload: dict[str, Any], mutate: Callable[[KnownGoodRecord], object]
    ) -> KnownGoodRecord:
        """Read-modify-write the record with its resourceVersion; re-read on conflict."""
        name = record_name(ref)
        uid = str(objects.meta(workload).get("uid") or "")
        for _ in range(MAX_WRITE_RETRIES):
            found = self._read(name)
            record = self._parse(found, ref) if found is not None else KnownGoodRecord(workload=ref)
            if record.uid and record.uid != uid:
                record = KnownGoodRecord(workload=ref)  # the workload was deleted and created again
            record.uid = uid
            mutate(record)
            record.updated_at = self._clock()
            text = self._fit(record)
            data = {RECORD_KEY: base64.b64encode(text.encode()).decode()}
            annotations = {WORKLOAD_ANNOTATION: f"{ref.kind}/{ref.namespace}/{ref.name}"}
            if self._signer is not None:
                annotations[SIGNATURE_ANNOTATION] = self._signer.sign(text)
            try:
                if found is None:
                    body = {
                        "metadata": {
                            "name": name,
                            "namespace": self.namespace,
                            "labels": {**RECORD_LABELS, WORKLOAD_NAMESPACE_LABEL: ref.namespace},
                            "annotations": annotations,
                        },
                        "type": "Opaque",
                        "data": data,
                    }
                    call_json(
                        "create_namespaced_secret",
                        self._core.create_namespaced_secret,
                        self.namespace,
                        body,
                        field_manager=FIELD_MANAGER,
                    )
                else:
                    found["data"] = data
                    found.setdefault("metadata", {})["annotations"] = {
                        **(found["metadata"].get("annotations") or {}),
                        **annotations,
                    }
                    call_json(
                        "replace_namespaced_secret",
                        self._core.replace_namespaced_secret,
                        name,
                        self.namespace,
                        found,
                        field_manager=FIELD_MANAGER,
                    )
                return record
            except StoreError as error:
                if error.status in (404, 409):
                    continue
                raise
        raise StoreError(f"update of {name}", RuntimeError("it kept changing"))

    # --- the Secret ------------------------------------------------------------------------------

    def _read(self, name: str) -> dict[str, Any] | None:
        return read_json("read_namespaced_secret", self._core.read_namespaced_secret, name, self.namespace)

    def _parse(self, secret: dict[str, Any], ref: ObjectRef) -> KnownGoodRecord:
        name = objects.meta(secret).get("name")
        try:
            text = base64.b64decode((secret.get("data") or {}).get(RECORD_KEY) or "").decode()
            if self._signer is not None:
                signature = objects.annotations_of(secret).get(SIGNATURE_ANNOTATION)
                self._signer.check(text, signature, f"known-good record {self.namespace}/{name}")
            record = KnownGoodRecord.model_validate_json(text)
        except (ValidationError, ValueError) as error:
            log.warning("known-good record %s/%s is unreadable (%s); starting afresh", self.namespace, name, error)
            return KnownGoodRecord(workload=ref)
        except Exception as error:  # noqa: BLE001 - whatever the signer raises, the record is not used
            log.warning("known-good record %s/%s is not used: %s", self.namespace, name, error)
            return KnownGoodRecord(workload=ref)
        return record if record.workload == ref else KnownGoodRecord(workload=ref)

    @staticmethod
    def _fit(record: KnownGoodRecord) -> str:
        """The record's JSON, leaving out the oldest job templates while it is too big."""
        text = record.model_dump_json()
        while len(text.encode()) > MAX_RECORD_BYTES and record.templates:
            record.templates = record.templates[1:]
            text = record.model_dump_json()
        return text
