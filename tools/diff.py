"""A short before/after diff of the fields an action changed, for the action record and the e-mail."""

from __future__ import annotations

import copy
import json
from typing import Any

from core.redaction import Redactor, redact_env
from tools import objects

MAX_LINES = 30
MAX_VALUE_CHARS = 160
_PREFIXES = (("spec.template.spec.", ""), ("spec.template.metadata.", "template."), ("spec.", ""))


def _flatten(value: Any, path: str, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        if not value and path:
            out[path] = "{}"
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), out)
    elif isinstance(value, list):
        if value and all(isinstance(item, dict) and "name" in item for item in value):
            # containers, env, ports, volumes: keyed by name, as strategic merge keys them
            for item in value:
                rest = {key: entry for key, entry in item.items() if key != "name"}
                _flatten(rest or {"": None}, f"{path}[{item['name']}]", out)
        elif all(not isinstance(item, dict | list) for item in value):
            out[path] = json.dumps(value)
        else:
            for index, item in enumerate(value):
                _flatten(item, f"{path}[{index}]", out)
    else:
        out[path.removesuffix(".")] = value if isinstance(value, str) else json.dumps(value)


def _short(path: str) -> str:
    for prefix, replacement in _PREFIXES:
        if path.startswith(prefix):
            return replacement + path[len(prefix) :]
    return path


def _fields(obj: dict[str, Any] | None, redactor: Redactor) -> dict[str, str]:
    if not obj:
        return {}
    shown = copy.deepcopy({"spec": obj.get("spec") or {}})
    shown_obj = {"kind": obj.get("kind"), **shown}
    for _, container in objects.containers(shown_obj):
        if container.get("env"):
            container["env"] = redact_env(container["env"], redactor)
    flat: dict[str, str] = {}
    _flatten(shown_obj["spec"], "spec", flat)
    return {_short(path): value for path, value in flat.items()}


def _clip(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def spec_diff(
    before: dict[str, Any] | None, after: dict[str, Any] | None, redactor: Redactor, *, label: str = ""
) -> str:
    """Unified-style diff (`-path: old` / `+path: new`) of the spec fields that differ; empty when none do."""
    old, new = _fields(before, redactor), _fields(after, redactor)
    changed = sorted(path for path in old.keys() | new.keys() if old.get(path) != new.get(path))
    if not changed:
        return ""
    lines = [f"--- {label} (before)".rstrip(), f"+++ {label} (after)".rstrip()]
    body: list[str] = []
    for path in changed:
        if path in old:
            body.append(f"-{path}: {_clip(old[path])}")
        if path in new:
            body.append(f"+{path}: {_clip(new[path])}")
    if len(body) > MAX_LINES:
        body = body[:MAX_LINES] + [f"… {len(body) - MAX_LINES} more lines"]
    return redactor.redact_text("\n".join(lines + body))
