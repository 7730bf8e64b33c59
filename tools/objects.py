"""Pure reading of Kubernetes API JSON: pod templates, containers, owners, revisions, selectors.

No calls and no clock here, so the policy guard and the tools share one reading of an object.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from core import k8s

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


def without_last_applied(obj: Obj) -> Obj:
    """The object without kubectl's last-applied annotation, a second copy of the spec (literals included).

    `obj` itself is left as it is: it may be the live object just read.
    """
    annotations = meta(obj).get("annotations")
    if not isinstance(annotations, dict) or k8s.LAST_APPLIED_ANNOTATION not in annotations:
        return obj
    kept = {key: value for key, value in annotations.items() if key != k8s.LAST_APPLIED_ANNOTATION}
    return {**obj, "metadata": {**obj["metadata"], "annotations": kept}}


def pod_template(obj: Obj) -> Obj:
    """The pod template of a workload (`spec.template`), or the pod itself for a Pod."""
    kind = obj.get("kind")
    if kind == "Pod":
        return obj
    if kind == "CronJob":
        return job_template_pods((obj.get("spec") or {}).get("jobTemplate") or {})
    template: Obj = (obj.get("spec") or {}).get("template") or {}
    return template


def job_template_pods(job_template: Obj) -> Obj:
    """The pod template of a CronJob's job template (`spec.template`, as in a Job)."""
    template: Obj = (job_template.get("spec") or {}).get("template") or {}
    return template


def template_field(kind: str | None) -> str:
    """Where a kind keeps what a rollout changes: `template`, or `jobTemplate` for a CronJob."""
    return "jobTemplate" if kind == "CronJob" else "template"


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
    """The revision number of a Deployment or ReplicaSet (annotation) or of a ControllerRevision (field)."""
    if obj.get("kind") == "ControllerRevision":
        value = obj.get("revision")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
    try:
        return int(annotations_of(obj)[k8s.REVISION_ANNOTATION])
    except (KeyError, ValueError):
        return None


def revision_template(obj: Obj) -> Obj:
    """The pod template a history entry holds, without the controller's hash label.

    A ReplicaSet keeps it in `spec.template`; a ControllerRevision in `data.spec.template` (with
    `$patch: replace`, the strategic-merge patch `kubectl rollout undo` sends back).
    """
    if obj.get("kind") == "ControllerRevision":
        template = copy.deepcopy(((obj.get("data") or {}).get("spec") or {}).get("template") or {})
        template.pop("$patch", None)
    else:
        template = copy.deepcopy((obj.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        for key in k8s.TEMPLATE_HASH_LABELS:
            labels.pop(key, None)
    return template


def workload_template(obj: Obj) -> Obj:
    """What a rollout of this workload changes: `spec.template`, or a CronJob's `spec.jobTemplate`."""
    template: Obj = copy.deepcopy((obj.get("spec") or {}).get(template_field(obj.get("kind"))) or {})
    return template


def normalized_template(template: Obj) -> Obj:
    """A (pod) template as a rollback writes it: no `$patch`, no controller hash labels, no null creationTimestamp.

    The controller labels each revision's template with its hash; without them a history entry's
    template equals the workload's own when they hold the same spec.
    """
    result = copy.deepcopy(template)
    result.pop("$patch", None)
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        if "creationTimestamp" in metadata and metadata["creationTimestamp"] is None:
            metadata.pop("creationTimestamp")
        labels = metadata.get("labels")
        if isinstance(labels, dict):
            for key in k8s.TEMPLATE_HASH_LABELS:
                labels.pop(key, None)
    return result


def template_digest(template: Obj) -> str:
    """A stable digest of a (pod or job) template, the same for a workload and its history entry."""
    shown = normalized_template(template)
    metadata = shown.get("metadata")
    if isinstance(metadata, dict) and metadata.get("labels") == {}:
        metadata.pop("labels")
    if metadata == {}:
        shown.pop("metadata")
    text = json.dumps(shown, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def revision_hash(obj: Obj) -> str | None:
    """The controller's hash of a history entry: `pod-template-hash` or the ControllerRevision's hash."""
    labels = labels_of(obj)
    if obj.get("kind") == "ControllerRevision":
        name = str(meta(obj).get("name") or "")
        return labels.get(k8s.CONTROLLER_HASH_LABEL) or (name.rsplit("-", 1)[-1] if "-" in name else None)
    return labels.get(k8s.POD_TEMPLATE_HASH_LABEL)


def made_from(pod: Obj, entry: Obj) -> bool:
    """Whether a pod was made from this history entry.

    ReplicaSet pods carry its `pod-template-hash`; StatefulSet pods the ControllerRevision's name
    and DaemonSet pods its hash, both in `controller-revision-hash`.
    """
    labels = labels_of(pod)
    if entry.get("kind") == "ControllerRevision":
        value = labels.get(k8s.CONTROLLER_REVISION_HASH_LABEL)
        return value is not None and value in {meta(entry).get("name"), revision_hash(entry)}
    value = labels.get(k8s.POD_TEMPLATE_HASH_LABEL)
    return value is not None and value == revision_hash(entry)


def is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


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
    """Who else writes this object: GitOps or Helm (`core.k8s.gitops_managers`), or what its managed-by label names.

    A change AMOS makes to a GitOps- or Helm-managed object may be reverted at the next sync.
    """
    declared = k8s.declared_manager(obj)
    return k8s.gitops_managers(obj) + ([declared] if declared else [])


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


def observed(workload: Obj) -> bool:
    """The workload's controller has seen its current spec (`status.observedGeneration`)."""
    status = workload.get("status") or {}
    return int(status.get("observedGeneration") or 0) >= int(meta(workload).get("generation") or 0)


def current_history_entry(workload: Obj, history: list[Obj]) -> Obj | None:
    """The history entry holding the workload's template: a StatefulSet names it in `status.updateRevision`,
    a Deployment by its revision annotation; otherwise the entry with the same template."""
    kind = workload.get("kind")
    if kind == "StatefulSet" and observed(workload):
        named = (workload.get("status") or {}).get("updateRevision")
        found = next((entry for entry in history if meta(entry).get("name") == named), None)
        if found is not None:
            return found
    if kind == "Deployment":
        number = revision(workload)
        found = next((entry for entry in history if number is not None and revision(entry) == number), None)
        if found is not None:
            return found
    digest = template_digest(workload_template(workload))
    same = [entry for entry in history if template_digest(revision_template(entry)) == digest]
    return max(same, key=lambda entry: revision(entry) or 0) if same else None


def pods_to_replace(workload: Obj, history: list[Obj], pods: list[Obj]) -> list[Obj]:
    """Failing pods a controller will not replace by itself after a template is put back.

    A StatefulSet waits for a broken pod to become Ready before it reverts it (the "forced
    rollback" of the Kubernetes docs), and with `OnDelete` it never replaces a pod; a DaemonSet
    with `OnDelete` neither. Those pods are not Ready and not made from the current revision:
    deleting them lets the controller create them from the restored template. Ready pods on an
    older revision are left alone (with OnDelete, when they move is a person's choice).
    """
    kind = workload.get("kind")
    strategy = ((workload.get("spec") or {}).get("updateStrategy") or {}).get("type") or "RollingUpdate"
    if kind not in k8s.CONTROLLER_REVISION_KINDS or (kind == "DaemonSet" and strategy != "OnDelete"):
        return []
    current = current_history_entry(workload, history)
    if current is None:
        return []
    return [
        pod
        for pod in pods
        if not meta(pod).get("deletionTimestamp") and not is_ready(pod) and not made_from(pod, current)
    ]


def job_pod_template(job: Obj) -> Obj:
    """A Job's pod template as its CronJob's job template held it: without the labels the Job's creation added."""
    template: Obj = copy.deepcopy((job.get("spec") or {}).get("template") or {})
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        template["metadata"]["labels"] = {k: v for k, v in labels.items() if k not in k8s.JOB_GENERATED_LABELS}
    return template
