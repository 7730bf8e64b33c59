"""Integrity of AMOS's own state: an HMAC over every record that a write can be made from.

Journal entries and snapshots live in the state namespace, where anyone who may edit a ConfigMap
there could otherwise forge "restore this spec to that Deployment". The key is a random Secret AMOS
creates in its own namespace (readable only by AMOS's ServiceAccount); a record whose signature
does not match is never used for a write and is reported.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
from typing import Any

from kubernetes import client

from orchestrator.state_api import StoreError, call_json

log = logging.getLogger(__name__)

KEY_SECRET = "amos-state-key"
KEY_FIELD = "hmac-key"
SIGNATURE_ANNOTATION = "amos.io/signature"


class ForgedState(Exception):
    """A state record failed its integrity check: it was altered outside AMOS."""


class StateSigner:
    """Signs and checks state records with the key Secret (created on first use; two replicas agree on it)."""

    def __init__(self, api_client: client.ApiClient, namespace: str, labels: dict[str, str]) -> None:
        self._core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self._labels = labels
        self._key: bytes | None = None
        self._lock = threading.Lock()

    def _load_key(self) -> bytes:
        with self._lock:
            if self._key is not None:
                return self._key
            for _ in range(3):
                try:
                    found: dict[str, Any] = call_json(
                        "read_namespaced_secret", self._core.read_namespaced_secret, KEY_SECRET, self.namespace
                    )
                    self._key = base64.b64decode(found["data"][KEY_FIELD])
                    return self._key
                except StoreError as error:
                    if error.status != 404:
                        raise
                body = {
                    "metadata": {"name": KEY_SECRET, "labels": self._labels},
                    "type": "Opaque",
                    "data": {KEY_FIELD: base64.b64encode(secrets.token_bytes(32)).decode()},
                }
                try:
                    call_json("create_namespaced_secret", self._core.create_namespaced_secret, self.namespace, body)
                    log.info("created the state integrity key %s/%s", self.namespace, KEY_SECRET)
                except StoreError as error:
                    if error.status != 409:  # another replica created it first: read that one
                        raise
            raise StoreError("load the state key", RuntimeError("it kept changing"))

    def sign(self, payload: str) -> str:
        return hmac.new(self._load_key(), payload.encode(), hashlib.sha256).hexdigest()

    def check(self, payload: str, signature: str | None, what: str) -> None:
        """Raise ForgedState unless `signature` is this key's HMAC of `payload`."""
        if not signature or not hmac.compare_digest(self.sign(payload), signature):
            raise ForgedState(f"{what} failed its integrity check (altered outside AMOS); it is not used")
