"""Secrets never leave the cluster: every text that goes to a model, a log or an e-mail passes through a `Redactor`.

Two layers: exact values AMOS has seen in Kubernetes Secrets (and their base64 and
URL-encoded forms), and shape rules for secrets it has never seen (`password=...`,
bearer tokens, JWTs, cloud keys, private keys, passwords in URLs).
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import BaseModel

REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 4  # shorter values ("on", "1", "yes") would redact half of every log line

T = TypeVar("T")

# Names whose value is a secret: the tail of `DB_PASSWORD`, `client_secret`, `x-api-key`, ...
# `pwd` is left out on purpose: `PWD=/app` is the working directory.
_SECRET_NAME = r"(?:password|passwd|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key)"
_SECRET_NAME_AT_END = re.compile(_SECRET_NAME + r"$", re.IGNORECASE)

_NOT_YET_REDACTED = r"(?!" + re.escape(REDACTED) + r")"


def _keep_markers(match: re.Match[str]) -> str:
    end = f"-----END {match['label']}PRIVATE KEY-----" if "-----END " in match[0] else ""
    return f"-----BEGIN {match['label']}PRIVATE KEY-----{REDACTED}{end}"


def _keep_key(match: re.Match[str]) -> str:
    quote_char = match["quote"] or ""
    return f"{match['key']}{quote_char}{REDACTED}{quote_char}"


# Order matters: whole blocks and URLs first, so the key-value rule does not cut them in half.
# Every rule starts on a literal or a bounded run, so a 100 kB log line cannot make one quadratic.
_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # PEM private keys, including a block cut short by a log tail.
    (
        re.compile(
            r"-----BEGIN (?P<label>[A-Z0-9 ]*)PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|.*\Z)",
            re.DOTALL,
        ),
        _keep_markers,
    ),
    # scheme://user:password@host keeps the user, which helps diagnosis.
    (
        re.compile(r"\b(?P<prefix>[a-z][a-z0-9+.-]{0,31}://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE),
        r"\g<prefix>" + REDACTED + "@",
    ),
    # Authorization: Bearer|Basic|... <credentials>
    (
        re.compile(
            # The possessive `?+` keeps "Bearer [REDACTED]" from being read as the value "Bearer".
            r"(?P<key>\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?(?:[a-z]+[ \t]+)?+)"
            + _NOT_YET_REDACTED
            + r"[^\s\"',;]+",
            re.IGNORECASE,
        ),
        r"\g<key>" + REDACTED,
    ),
    # A bare bearer token; the length floor keeps prose like "Bearer token" readable.
    (re.compile(r"\b(?P<key>Bearer\s+)[A-Za-z0-9\-._~+/]{16,}=*"), r"\g<key>" + REDACTED),
    # JWTs (Kubernetes service-account tokens are JWTs).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{1,1024}\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # AWS access key ids.
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    # GitHub tokens (classic and fine-grained).
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"), REDACTED),
    # Google API keys.
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"), REDACTED),
    # password=..., "api_key": "...", secret: ... -- keep the key, drop the value.
    (
        re.compile(
            r"(?P<key>" + _SECRET_NAME + r"[\"']?[ \t]*[:=][ \t]*)"
            r"(?:(?P<quote>[\"'])" + _NOT_YET_REDACTED + r"[^\"'\n]+[\"']"
            r"|" + _NOT_YET_REDACTED + r"[^\s\"'&,;}\]]+)",
            re.IGNORECASE,
        ),
        _keep_key,
    ),
)


class Redactor:
    """Replaces secret values and secret-shaped text with `[REDACTED]`.

    Safe to share between threads; `add` may be called while other threads redact.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._known: re.Pattern[str] | None = None
        self.add(values)

    @classmethod
    def from_secret_data(cls, *secret_data: Mapping[str, str] | None) -> Redactor:
        """Build from the base64 `data` maps of Kubernetes Secrets, as the API returns them."""
        redactor = cls()
        for data in secret_data:
            redactor.add_secret_data(data)
        return redactor

    def add_secret_data(self, data: Mapping[str, str] | None) -> None:
        """Learn the values of one Secret's `data`, so a Secret read mid-incident is covered too."""
        values: list[str] = []
        for encoded in (data or {}).values():
            values.append(encoded)  # a dumped Secret shows the base64 form
            try:
                values.append(base64.b64decode(encoded, validate=True).decode("utf-8"))
            except (binascii.Error, ValueError):
                continue  # binary data (a keystore, say): only the base64 form can appear in text
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Learn plain secret values; their base64 and URL-encoded forms are redacted as well."""
        new: set[str] = set()
        for raw in values:
            value = raw.strip()
            if len(value) < MIN_SECRET_LENGTH:
                continue
            new.update({value, base64.b64encode(value.encode()).decode(), quote(value, safe="")})
        with self._lock:
            if new <= self._values:
                return
            self._values |= new
            # Longest first, so a secret that contains another is replaced whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._known = re.compile("|".join(re.escape(value) for value in ordered))

    def redact_text(self, text: str) -> str:
        known = self._known
        if known is not None:
            text = known.sub(REDACTED, text)
        for pattern, replacement in _RULES:
            text = pattern.sub(replacement, text)
        return text

    def redact(self, value: T) -> T:
        """Redact strings anywhere in `value`: text, dicts, lists, tuples and pydantic models.

        Dict keys are kept; a string under a secret-looking key (`password`, `apiKey`, ...)
        is redacted whole. Enums and other non-text leaves pass through unchanged.
        """
        return self._redact(value)  # type: ignore[no-any-return]

    def _redact(self, value: Any) -> Any:
        if isinstance(value, Enum):
            return value
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, BaseModel):
            return type(value).model_validate(self._redact(value.model_dump()))
        if isinstance(value, Mapping):
            return {key: self._redact_entry(key, item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._redact(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self._redact(item) for item in value)
        return value

    def _redact_entry(self, key: Any, item: Any) -> Any:
        if isinstance(item, str) and item and isinstance(key, str) and _SECRET_NAME_AT_END.search(key):
            return REDACTED
        return self._redact(item)


def redact_env(env: Iterable[Mapping[str, Any]], redactor: Redactor | None = None) -> list[dict[str, Any]]:
    """Show a container's `env` list (API JSON, camelCase) without its secrets, in the same shape.

    A variable taken from a `secretKeyRef` shows `[REDACTED]` as its value and keeps its
    reference, which is what diagnosis needs; a literal value under a secret-looking name
    is redacted whole; other literal values go through the redactor.
    """
    redactor = redactor or Redactor()
    shown: list[dict[str, Any]] = []
    for var in env:
        name = str(var.get("name", ""))
        entry: dict[str, Any] = {"name": name}
        value_from = var.get("valueFrom")
        if value_from and value_from.get("secretKeyRef"):
            entry["value"] = REDACTED
        elif var.get("value") is not None:
            value = str(var["value"])
            entry["value"] = REDACTED if value and _SECRET_NAME_AT_END.search(name) else redactor.redact_text(value)
        if value_from:
            entry["valueFrom"] = redactor.redact(dict(value_from))
        shown.append(entry)
    return shown
