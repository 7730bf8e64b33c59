"""A short before/after diff of the fields an action changed, for the action record and the e-mail."""

from __future__ import annotations

import copy
import json
from typing import Any

from core.redaction import Redactor, clip_text, redact_env
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
    """One line (newlines shown as `\\n`) of at most MAX_VALUE_CHARS."""
    return clip_text(text.replace("\n", "\\n"), MAX_VALUE_CHARS, keep="start")


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


def _by_name(items: list[Any] | None) -> dict[str, Any]:
    return {str(item.get("name")): item for item in items or [] if isinstance(item, dict)}


def _env_changes(before: list[Any] | None, after: list[Any] | None) -> list[str]:
    """Names only: a literal value may be a credential."""
    old, new = _by_name(before), _by_name(after)
    parts = []
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    changed = sorted(name for name in set(old) & set(new) if old[name] != new[name])
    for label, names in (("added", added), ("removed", removed), ("changed", changed)):
        if names:
            parts.append(f"{label} {', '.join(names)}")
    return parts


def _config_ref_text(refs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, set[str]]:
    return {f"{kind} {name}": set(ref["keys"]) for (kind, name), ref in refs.items()}


def _probe_text(probe: dict[str, Any] | None) -> str:
    """A probe as JSON with its HTTP header values hidden (they may carry a token)."""
    shown = copy.deepcopy(probe)
    headers = ((shown or {}).get("httpGet") or {}).get("httpHeaders")
    for header in headers or []:
        if isinstance(header, dict) and "value" in header:
            header["value"] = "[hidden]"
    return _clip(json.dumps(shown))


def template_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> list[str]:
    """What a pod template changed against the previous one, one short line per change (no env values).

    Covers images, command/args, env/envFrom, ConfigMap/Secret references, resources, probes,
    init containers and scheduling (nodeSelector, affinity, tolerations).
    """
    if before is None:
        return []
    old_spec, new_spec = before.get("spec") or {}, after.get("spec") or {}
    lines: list[str] = []
    for field, label in (("initContainers", "init container"), ("containers", "container")):
        old, new = _by_name(old_spec.get(field)), _by_name(new_spec.get(field))
        lines += [f"{label} {name} added (image {new[name].get('image')})" for name in sorted(set(new) - set(old))]
        lines += [f"{label} {name} removed" for name in sorted(set(old) - set(new))]
        for name in sorted(set(old) & set(new)):
            a, b = old[name], new[name]
            if a.get("image") != b.get("image"):
                lines.append(f"image of {label} {name}: {a.get('image')} -> {b.get('image')}")
            for key in ("command", "args"):
                if a.get(key) != b.get(key):
                    lines.append(
                        f"{key} of {label} {name}: {_clip(json.dumps(a.get(key)))} -> {_clip(json.dumps(b.get(key)))}"
                    )
            env = _env_changes(a.get("env"), b.get("env"))
            if env:
                lines.append(f"env of {label} {name}: {'; '.join(env)}")
            if a.get("envFrom") != b.get("envFrom"):
                lines.append(
                    f"envFrom of {label} {name}: {_clip(json.dumps(a.get('envFrom')))} -> "
                    f"{_clip(json.dumps(b.get('envFrom')))}"
                )
            if a.get("resources") != b.get("resources"):
                lines.append(
                    f"resources of {label} {name}: {_clip(json.dumps(a.get('resources') or {}))} -> "
                    f"{_clip(json.dumps(b.get('resources') or {}))}"
                )
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                if a.get(probe) != b.get(probe):
                    lines.append(
                        f"{probe} of {label} {name}: {_probe_text(a.get(probe))} -> {_probe_text(b.get(probe))}"
                    )
    old_refs = _config_ref_text(objects.config_refs({"kind": "Pod", "spec": old_spec}))
    new_refs = _config_ref_text(objects.config_refs({"kind": "Pod", "spec": new_spec}))
    for ref in sorted(set(new_refs) | set(old_refs)):
        if ref not in old_refs:
            keys = sorted(new_refs[ref])
            lines.append(f"references {ref}" + (f" (keys {', '.join(keys)})" if keys else "") + " (new)")
        elif ref not in new_refs:
            lines.append(f"no longer references {ref}")
        elif new_refs[ref] - old_refs[ref]:
            lines.append(f"references new keys of {ref}: {', '.join(sorted(new_refs[ref] - old_refs[ref]))}")
    for key in ("nodeSelector", "affinity", "tolerations", "volumes", "serviceAccountName"):
        if old_spec.get(key) != new_spec.get(key):
            lines.append(f"{key}: {_clip(json.dumps(old_spec.get(key)))} -> {_clip(json.dumps(new_spec.get(key)))}")
    return lines
