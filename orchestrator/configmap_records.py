"""One typed record per ConfigMap in the state namespace: read, list, delete, and a conditional read-modify-write.

Every record is one ConfigMap labelled `app.kubernetes.io/managed-by=amos` and `amos.io/record=<type>`,
the record itself JSON under one data key. A write carries the resourceVersion it read, so a concurrent
writer gets 409 and re-reads instead of overwriting. A signed record (`orchestrator.integrity`) whose
signature does not match is never used: AMOS writes to the cluster from some of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from kubernetes import client
from pydantic import BaseModel, ValidationError

from core.k8s import AMOS_MANAGER, MANAGED_BY_LABEL, RECORD_LABEL
from orchestrator.integrity import SIGNATURE_ANNOTATION, ForgedState, StateSigner
from orchestrator.state_api import StoreError, call_json, read_json

log = logging.getLogger(__name__)

RECORD_KEY = "record.json"
MAX_WRITE_RETRIES = 5

M = TypeVar("M", bound=BaseModel)


class ConfigMapRecords:
    """The ConfigMap calls under the orchestrator's records; thread-safe (every write is conditional)."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self._core = client.CoreV1Api(api_client)
        self.signer = StateSigner(api_client, namespace, {MANAGED_BY_LABEL: AMOS_MANAGER})

    # --- raw ConfigMap calls ----------------------------------------------------------------------

    @staticmethod
    def _call(call: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return call_json(call, method, *args, **kwargs)

    def read(self, name: str) -> dict[str, Any] | None:
        return read_json("read_namespaced_config_map", self._core.read_namespaced_config_map, name, self.namespace)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"]["namespace"] = self.namespace
        result: dict[str, Any] = self._call(
            "create_namespaced_config_map",
            self._core.create_namespaced_config_map,
            self.namespace,
            body,
            field_manager=AMOS_MANAGER,
        )
        return result

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "replace_namespaced_config_map",
            self._core.replace_namespaced_config_map,
            body["metadata"]["name"],
            self.namespace,
            body,
            field_manager=AMOS_MANAGER,
        )
        return result

    def delete(self, name: str) -> bool:
        try:
            self._call("delete_namespaced_config_map", self._core.delete_namespaced_config_map, name, self.namespace)
        except StoreError as error:
            if error.status == 404:
                return False
            raise
        return True

    def list(self, record: str) -> list[dict[str, Any]]:
        selector = f"{MANAGED_BY_LABEL}={AMOS_MANAGER},{RECORD_LABEL}={record}"
        result = self._call(
            "list_namespaced_config_map",
            self._core.list_namespaced_config_map,
            self.namespace,
            label_selector=selector,
        )
        items: list[dict[str, Any]] = (result or {}).get("items") or []
        return items

    @staticmethod
    def labels(record: str, **extra: str) -> dict[str, str]:
        return {MANAGED_BY_LABEL: AMOS_MANAGER, RECORD_LABEL: record, **extra}

    def ensure_namespace(self) -> None:
        """Create the state namespace when it is missing."""
        try:
            self._call("read_namespace", self._core.read_namespace, self.namespace)
            return
        except StoreError as error:
            if error.status != 404:
                raise
        body = {"metadata": {"name": self.namespace, "labels": {MANAGED_BY_LABEL: AMOS_MANAGER}}}
        try:
            self._call("create_namespace", self._core.create_namespace, body, field_manager=AMOS_MANAGER)
            log.info("created the state namespace %s", self.namespace)
        except StoreError as error:
            if error.status != 409:
                raise

    # --- typed records ------------------------------------------------------------------------------

    def update(
        self,
        name: str,
        model: type[M],
        labels: dict[str, str],
        annotations: dict[str, str],
        default: Callable[[], M],
        mutate: Callable[[M], None],
        *,
        signed: bool = False,
    ) -> M:
        """Read-modify-write one JSON record with its resourceVersion; re-read on conflict."""
        for _ in range(MAX_WRITE_RETRIES):
            found = self.read(name)
            if found is None:
                record = default()
                mutate(record)
                text = record.model_dump_json()
                extra = {SIGNATURE_ANNOTATION: self.signer.sign(text)} if signed else {}
                body = {
                    "metadata": {"name": name, "labels": labels, "annotations": annotations | extra},
                    "data": {RECORD_KEY: text},
                }
                try:
                    self.create(body)
                    return record
                except StoreError as error:
                    if error.status == 409:
                        continue
                    raise
            record = self.parse(found, model, signed) or default()
            mutate(record)
            text = record.model_dump_json()
            extra = {SIGNATURE_ANNOTATION: self.signer.sign(text)} if signed else {}
            found.setdefault("metadata", {})
            found["metadata"]["labels"] = {**(found["metadata"].get("labels") or {}), **labels}
            found["metadata"]["annotations"] = {**(found["metadata"].get("annotations") or {}), **annotations, **extra}
            found["data"] = {**(found.get("data") or {}), RECORD_KEY: text}
            try:
                self.replace(found)
                return record
            except StoreError as error:
                if error.status in (404, 409):
                    continue
                raise
        raise StoreError(f"update of {name}", RuntimeError("it kept changing"))

    def get(self, name: str, model: type[M], *, signed: bool = False) -> M | None:
        found = self.read(name)
        return None if found is None else self.parse(found, model, signed)

    def parse(self, found: dict[str, Any], model: type[M], signed: bool) -> M | None:
        """The record in a ConfigMap; None (logged) when it is unreadable or, if signed, its signature fails."""
        metadata = found.get("metadata") or {}
        text = (found.get("data") or {}).get(RECORD_KEY) or ""
        if signed:
            try:
                self.signer.check(
                    text,
                    (metadata.get("annotations") or {}).get(SIGNATURE_ANNOTATION),
                    f"state record {self.namespace}/{metadata.get('name')}",
                )
            except ForgedState as forged:
                log.error(
                    "%s; a person should look at it (kubectl -n %s get configmap %s -o yaml)",
                    forged,
                    self.namespace,
                    metadata.get("name"),
                )
                return None
        try:
            return model.model_validate_json(text)
        except ValidationError:
            log.warning("state record %s/%s is unreadable; ignored", self.namespace, metadata.get("name"))
            return None

    def sign_into(self, found: dict[str, Any], record: BaseModel) -> None:
        """Put `record` into the ConfigMap `found` (as read), signed; the caller replaces it."""
        text = record.model_dump_json()
        found["data"] = {**(found.get("data") or {}), RECORD_KEY: text}
        found["metadata"]["annotations"] = {
            **(found["metadata"].get("annotations") or {}),
            SIGNATURE_ANNOTATION: self.signer.sign(text),
        }
