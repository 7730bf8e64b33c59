"""Pure reading of Kubernetes API JSON: pod templates, containers, owners, revisions, selectors.

No calls and no clock here, so the policy guard and the tools share one reading of an object.
"""

from __future__ import annotations

import copy
from typing import Any

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
CHANGE_CAUSE_ANNOTATION = "kubernetes.io/change-cause"
POD_TEMPLATE_HASH = "pod-template-hash"
RESTARTED_AT_ANNOTATION = "kubectl.kubernetes.io/restartedAt"
CONTAINER_FIELDS = ("containers", "initContainers")

Obj = dict[str, Any]


def meta(obj: Obj) -> Obj:
    result: Obj = obj.get("metadata") or {}
    return result


def labels_of(obj: Obj) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict(meta(obj).get("annotations") or {})


def without_managed_fields(obj: Obj) -> Obj:
    """A deep copy without `managedFields`, which is bulky and says nothing about the fault."""
    result = copy.deepcopy(obj)
    result.get("metadata", {}).pop("managedFields", None)
    return result


def pod_template(obj: Obj) -> Obj:
    """The pod template of a workload (`spec.template`), or the pod itself for a Pod."""
    kind = obj.get("kind")
    spec: Obj = obj.get("spec") or {}
    if kind == "Pod":
        return obj
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template: Obj = spec.get("template") or {}
    return template


def pod_spec(obj: Obj) -> Obj:
    spec: Obj = pod_template(obj).get("spec") or {}
    return spec


def containers(obj: Obj) -> list[tuple[str, Obj]]:
    """(field, container) for every container and init container of a pod or pod template."""
    spec = pod_spec(obj)
    return [(field, container) for field in CONTAINER_FIELDS for container in spec.get(field) or []]


def find_container(obj: Obj, name: str) -> tuple[str, Obj] | None:
    for field, container in containers(obj):
        if container.get("name") == name:
            return field, container
    return None


def container_names(obj: Obj) -> list[str]:
    return [str(container.get("name")) for _, container in containers(obj)]


def controller_ref(obj: Obj) -> Obj | None:
    refs = meta(obj).get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return dict(ref)
    return dict(refs[0]) if refs else None


def owned_by(obj: Obj, owner: Obj) -> bool:
    uid = meta(owner).get("uid")
    return any(ref.get("uid") == uid for ref in meta(obj).get("ownerReferences") or [])


def revision(obj: Obj) -> int | None:
    try:
        return int(annotations_of(obj)[REVISION_ANNOTATION])
    except (KeyError, ValueError):
        return None


def label_selector(selector: Obj | None) -> str:
    """A LabelSelector as the query string `list` takes (`a=b,c in (d,e),!f`)."""
    selector = selector or {}
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        if operator == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            parts.append(str(key))
        elif operator == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def is_marked(obj: Obj, key: str) -> bool:
    """A label or annotation `key` set to true (`amos.io/protected=true`)."""
    values = (labels_of(obj).get(key), annotations_of(obj).get(key))
    return any(str(value).strip().lower() in {"true", "yes", "1"} for value in values if value is not None)


def managed_by(obj: Obj) -> list[str]:
    """Who else writes this object (GitOps or Helm); a change AMOS makes there may be reverted."""
    found: list[str] = []
    object_labels, object_annotations = labels_of(obj), annotations_of(obj)
    if "argocd.argoproj.io/tracking-id" in object_annotations or "argocd.argoproj.io/instance" in object_labels:
        found.append("argocd")
    if any(key.startswith("kustomize.toolkit.fluxcd.io/") for key in object_labels):
        found.append("flux-kustomization")
    if any(key.startswith("helm.toolkit.fluxcd.io/") for key in object_labels):
        found.append("flux-helmrelease")
    if "meta.helm.sh/release-name" in object_annotations:
        found.append("helm")
    manager = object_labels.get("app.kubernetes.io/managed-by")
    if manager and manager.lower() not in {"helm"} | set(found):
        found.append(manager)
    return found


def config_refs(obj: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) -> {optional, keys, used_by} for every ConfigMap/Secret a pod (template) references."""
    refs: dict[tuple[str, str], dict[str, Any]] = {}

    def add(kind: str, name: str | None, key: str | None, optional: bool, user: str) -> None:
        if not name:
            return
        ref = refs.setdefault((kind, name), {"optional": True, "keys": set(), "used_by": set()})
        ref["optional"] = ref["optional"] and optional
        if key:
            ref["keys"].add(key)
        ref["used_by"].add(user)

    for _, container in containers(obj):
        user = f"container {container.get('name')}"
        for item in container.get("env") or []:
            value_from = item.get("valueFrom") or {}
            for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                ref = value_from.get(field)
                if ref:
                    add(kind, ref.get("name"), ref.get("key"), bool(ref.get("optional")), user)
        for source in container.get("envFrom") or []:
            for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = source.get(field)
                if ref:
                    add(kind, ref.get("name"), None, bool(ref.get("optional")), user)
    for volume in pod_spec(obj).get("volumes") or []:
        user = f"volume {volume.get('name')}"
        sources = [volume] + [source for source in (volume.get("projected") or {}).get("sources") or []]
        for source in sources:
            for kind, field, name_key in (("ConfigMap", "configMap", "name"), ("Secret", "secret", "secretName")):
                ref = source.get(field)
                if not ref:
                    continue
                name = ref.get(name_key) or ref.get("name")
                items = ref.get("items") or [{}]
                for item in items:
                    add(kind, name, item.get("key"), bool(ref.get("optional")), user)
    return refs
