"""Read-only tools: what a diagnosing model (or the context builder) may look at.

Every result is bounded (lines, items, characters) and passed through the Redactor:
env values from Secrets are never shown, Secret values are never read into a result,
and text from the cluster (logs, event messages) is data, clipped and redacted.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ParamSpec, Protocol

from core import k8s
from core.redaction import Redactor, redact_env
from tools import objects
from tools.cluster import ApiCallError, ClusterAccess
from tools.diff import template_changes
from tools.policy import IncidentScope
from tools.results import ToolResult, ToolStatus

P = ParamSpec("P")

MAX_TAIL_LINES = 500
LOG_LIMIT_BYTES = 256 * 1024  # what the API server sends at most; the tail below is what a model sees
MAX_LOG_CHARS = 8000
MAX_TEXT_CHARS = 300
MAX_EVENTS = 20
MAX_REVISIONS = 10
MAX_PODS = 30
MAX_LIST_ITEMS = 40
MAX_KEYS = 50
MAX_OWNER_DEPTH = 5


class KnownGood(Protocol):
    """Which revisions are known-good or known-bad (`orchestrator.knowngood_store.KnownGoodStore`)."""

    def judge(
        self, workload: dict[str, Any], history: list[dict[str, Any]], pods: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """{revisions: {number: {known_good: recorded|inferred|None, known_bad, note}}, target, target_source,
        reason, known_bad_digests}."""
        ...

    def job_templates(self, workload: dict[str, Any]) -> dict[int, dict[str, Any]]:
        """A CronJob's job templates that produced a successful Job, by number."""
        ...


class _Clip:
    """Cuts text and lists to size and remembers whether it had to; text is redacted whole before it is cut
    (a cut first could split a secret, or the BEGIN line of a private key, away from the rule that finds it)."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.truncated = False
        self._redact = redactor.redact_text if redactor is not None else (lambda text: text)

    def text(self, value: Any, limit: int = MAX_TEXT_CHARS) -> str:
        text = self._redact("" if value is None else str(value))
        if len(text) <= limit:
            return text
        self.truncated = True
        return text[: limit - 1] + "…"

    def tail(self, text: str, limit: int) -> str:
        text = self._redact(text)
        if len(text) <= limit:
            return text
        self.truncated = True
        cut = text[-limit:]
        return "…" + cut[cut.find("\n") + 1 :] if "\n" in cut else "…" + cut

    def items(self, values: list[Any] | None, limit: int = MAX_LIST_ITEMS) -> list[Any]:
        values = list(values or [])
        if len(values) > limit:
            self.truncated = True
            return values[:limit]
        return values

    def last(self, values: list[Any], limit: int) -> list[Any]:
        if len(values) > limit:
            self.truncated = True
            return values[-limit:]
        return values


class _Refusal(Exception):
    pass


def tool(*, no_data: str | None = None) -> Callable[[Callable[P, tuple[Any, bool]]], Callable[P, dict[str, Any]]]:
    """Turn `(data, truncated)` into a redacted ToolResult dict; any exception becomes an error result.

    `no_data` names the list or text in `data` whose emptiness means the call found nothing (status no_data).
    """

    def decorate(method: Callable[P, tuple[Any, bool]]) -> Callable[P, dict[str, Any]]:
        @functools.wraps(method)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
            self = args[0]
            redactor = self.access.redactor  # type: ignore[attr-defined]
            try:
                data, truncated = method(*args, **kwargs)
                found = no_data is None or bool(data.get(no_data))
                status = ToolStatus.OK if found else ToolStatus.NO_DATA
                result = ToolResult(status=status, data=redactor.redact(data), truncated=truncated)
            except ApiCallError as error:
                result = ToolResult.failure(redactor.redact_text(str(error)))
            except _Refusal as error:
                result = ToolResult.failure(redactor.redact_text(f"refused: {error}"), ToolStatus.REFUSED)
            except Exception as error:  # noqa: BLE001 - a tool never raises into the agent loop
                result = ToolResult.failure(redactor.redact_text(f"{method.__name__} failed: {error}"))
            return result.model_dump()

        # ADK builds the function declaration from the signature: show the dict the caller gets.
        wrapper.__signature__ = inspect.signature(method).replace(return_annotation=dict[str, Any])  # type: ignore[attr-defined]
        wrapper.__annotations__ = {**method.__annotations__, "return": "dict[str, Any]"}
        return wrapper

    return decorate


class ReadTools:
    """Bounded, redacted, read-only views of pods and workloads.

    With a `scope`, reads are limited to the incident's namespace; AMOS's own namespace is never read.
    """

    def __init__(
        self, access: ClusterAccess, scope: IncidentScope | None = None, *, known_good: KnownGood | None = None
    ) -> None:
        self.access = access
        self.scope = scope
        self.known_good = known_good

    def as_functions(self) -> list[Callable[..., dict[str, Any]]]:
        return [
            self.get_pod_logs,
            self.get_events,
            self.describe,
            self.get_owner_chain,
            self.get_rollout_history,
            self.get_config_refs,
            self.list_pods,
        ]

    def _namespace(self, namespace: str) -> None:
        settings = self.access.settings
        if namespace in {settings.own_namespace, settings.store_namespace}:
            raise _Refusal(f"namespace {namespace} is AMOS's own namespace")
        if self.scope is not None and namespace != self.scope.namespace:
            raise _Refusal(f"namespace {namespace} is outside the incident's namespace {self.scope.namespace}")

    # --- tools --------------------------------------------------------------------------------

    @tool(no_data="log")
    def get_pod_logs(
        self, namespace: str, pod: str, container: str | None = None, previous: bool = False, tail_lines: int = 100
    ) -> tuple[Any, bool]:
        """Read the last lines of a pod container's log.

        Use previous=True to read the log of the container's last terminated run (the crash
        that caused a restart); the current log of a crash-looping container is often empty.

        Args:
            namespace: namespace of the pod.
            pod: pod name.
            container: container name; when empty, the first container that is not ready or has restarted.
            previous: read the previous (terminated) run of the container instead of the current one.
            tail_lines: how many lines from the end to read (1 to 500).

        Returns:
            {ok, data: {pod, container, previous, log}, error, truncated}; the log is clipped and redacted.
        """
        self._namespace(namespace)
        clip = _Clip(self.access.redactor)
        pod_object = self.access.get("Pod", namespace, pod)
        names = objects.container_names(pod_object)
        if container is None or container == "":
            container = _pick_container(pod_object)
        elif container not in names:
            raise _Refusal(f"container {container} is not in pod {pod} (containers: {', '.join(names)})")
        tail = max(1, min(int(tail_lines), MAX_TAIL_LINES))
        text = self.access.pod_log(
            namespace, pod, container=container, previous=previous, tail_lines=tail, limit_bytes=LOG_LIMIT_BYTES
        )
        log = clip.tail(text.rstrip("\n"), MAX_LOG_CHARS)
        data = {"pod": pod, "container": container, "previous": previous, "log": log}
        return data, clip.truncated

    @tool(no_data="events")
    def get_events(self, namespace: str, kind: str, name: str) -> tuple[Any, bool]:
        """List the recent Kubernetes events about one object (newest last).

        Args:
            namespace: namespace of the object.
            kind: object kind, e.g. Pod, Deployment, ReplicaSet, Job.
            name: object name.

        Returns:
            {ok, data: {object, events: [{type, reason, message, count, first_seen, last_seen, source}]}}.
        """
        self._namespace(namespace)
        clip = _Clip(self.access.redactor)
        kind = k8s.canonical_kind(kind)
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        items = self.access.list_objects("Event", namespace, field_selector=selector)
        items.sort(key=lambda item: k8s.event_time(item) or "")
        events = [
            {
                "type": item.get("type"),
                "reason": item.get("reason"),
                "message": clip.text(item.get("message")),
                "count": item.get("count") or (item.get("series") or {}).get("count") or 1,
                "first_seen": item.get("firstTimestamp") or item.get("eventTime"),
                "last_seen": k8s.event_time(item),
                "source": (item.get("source") or {}).get("component") or item.get("reportingComponent"),
            }
            for item in clip.last(items, MAX_EVENTS)
        ]
        return {"object": f"{kind}/{name}", "events": events}, clip.truncated

    @tool()
    def describe(self, namespace: str, kind: str, name: str) -> tuple[Any, bool]:
        """Describe a Pod or workload compactly: spec excerpt, status and conditions.

        Env values from Secrets are shown as [REDACTED]; other secret-looking values are redacted too.

        Args:
            namespace: namespace of the object.
            kind: Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job or CronJob.
            name: object name.

        Returns:
            {ok, data: {kind, name, ...spec excerpt..., status, conditions}}.
        """
        self._namespace(namespace)
        kind = k8s.canonical_kind(kind)
        if kind not in k8s.READABLE_KINDS:
            raise _Refusal(f"describe supports {', '.join(k8s.READABLE_KINDS)}, not {kind}")
        obj = self.access.get(kind, namespace, name)
        clip = _Clip(self.access.redactor)
        return _describe(obj, clip, self.access), clip.truncated

    @tool()
    def get_owner_chain(self, namespace: str, kind: str, name: str) -> tuple[Any, bool]:
        """Follow controller owner references upward, e.g. Pod -> ReplicaSet -> Deployment.

        Each entry says whether the object is protected from AMOS and who else manages it
        (Argo CD, Flux, Helm, or what its managed-by label names), where a change by AMOS may be reverted.

        Args:
            namespace: namespace of the object.
            kind: kind of the starting object, e.g. Pod.
            name: name of the starting object.

        Returns:
            {ok, data: {chain: [{kind, name, protected, managed_by}], top: {kind, name}}}.
        """
        self._namespace(namespace)
        kind = k8s.canonical_kind(kind)
        obj = self.access.get(kind, namespace, name)
        chain = [self._owner_entry(obj)]
        for _ in range(MAX_OWNER_DEPTH):
            ref = objects.controller_ref(obj)
            if ref is None:
                break
            owner_kind, owner_name = str(ref.get("kind")), str(ref.get("name"))
            try:
                obj = self.access.get(owner_kind, namespace, owner_name)
            except ValueError:
                chain.append({"kind": owner_kind, "name": owner_name, "note": "kind not read by AMOS"})
                break
            except ApiCallError as error:
                if error.status != 404:
                    raise
                chain.append({"kind": owner_kind, "name": owner_name, "note": "not found (deleted?)"})
                break
            chain.append(self._owner_entry(obj))
        top = {"kind": chain[-1]["kind"], "name": chain[-1]["name"]}
        return {"chain": chain, "top": top}, False

    def _owner_entry(self, obj: dict[str, Any]) -> dict[str, Any]:
        settings = self.access.settings
        return {
            "kind": obj.get("kind"),
            "name": objects.meta(obj).get("name"),
            "protected": objects.is_marked(obj, settings.protected_label),
            "ignored": objects.is_marked(obj, settings.ignore_annotation),
            "managed_by": objects.managed_by(obj),
        }

    @tool()
    def get_rollout_history(self, namespace: str, deployment: str, kind: str = "Deployment") -> tuple[Any, bool]:
        """List a workload's revisions, oldest first: what each ran, what it changed, and which were healthy.

        Deployments keep ReplicaSets, StatefulSets and DaemonSets ControllerRevisions; for a CronJob the
        revisions are the job templates AMOS saw produce a successful Job. Each revision says whether it
        is the current one, known-good (recorded: AMOS saw it healthy; inferred: from the history's state),
        known-bad (AMOS saw it failing), and what it changed against the previous revision.
        Use rollback_target to roll back: the newest known-good revision, never a known-bad one.

        Args:
            namespace: namespace of the workload.
            deployment: workload name (of a Deployment, StatefulSet, DaemonSet or CronJob).
            kind: Deployment, StatefulSet, DaemonSet or CronJob.

        Returns:
            {ok, data: {kind, deployment, current_revision, update_strategy, rollback_target: {revision, source,
            reason}, revisions: [{revision, name, replicaset, current, known_good, known_bad, note, replicas, ready,
            created, change_cause, changes, containers: [{name, image, init, command, args, env_names,
            resources}]}]}}.
        """
        self._namespace(namespace)
        clip = _Clip(self.access.redactor)
        kind = k8s.canonical_kind(kind)
        if kind not in k8s.REVISIONED_KINDS:
            raise _Refusal(f"a {kind} keeps no rollout history (revisions: {', '.join(k8s.REVISIONED_KINDS)})")
        workload = self.access.get(kind, namespace, deployment)
        entries, target = self._revision_entries(workload, clip)
        previous: dict[str, Any] | None = None
        for entry in entries:
            template = entry.pop("_template")
            entry["changes"] = [clip.text(line, 240) for line in clip.items(template_changes(previous, template), 20)]
            previous = template
        shown = clip.last(entries, MAX_REVISIONS)
        current = next((entry["revision"] for entry in shown if entry["current"]), None)
        spec = workload.get("spec") or {}
        data: dict[str, Any] = {
            "kind": kind,
            "deployment": deployment,
            "current_revision": current,
            "update_strategy": spec.get("updateStrategy") or spec.get("strategy") or None,
            "rollback_target": target,
            "revisions": shown,
        }
        return data, clip.truncated

    def _revision_entries(self, workload: dict[str, Any], clip: _Clip) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One view per revision, oldest first, each with its pod `_template` (removed before it is shown),
        and the rollback target."""
        kind = workload.get("kind")
        history = self.access.history_of(workload)
        pods = self.access.pods_of(workload) if kind in k8s.CONTROLLER_REVISION_KINDS else []
        judged = self.known_good.judge(workload, history, pods) if self.known_good is not None else {}
        states: dict[Any, dict[str, Any]] = judged.get("revisions") or {}
        target = {
            "revision": judged.get("target"),
            "source": judged.get("target_source"),
            "reason": judged.get("reason") or "AMOS's known-good history is not available",
        }
        entries: list[dict[str, Any]] = []
        if kind == "CronJob":
            current = objects.template_digest(objects.workload_template(workload))
            templates = self.known_good.job_templates(workload) if self.known_good is not None else {}
            seen_current = False
            for number, job_template in sorted(templates.items()):
                is_current = objects.template_digest(job_template) == current
                seen_current = seen_current or is_current
                entries.append(
                    self._entry(
                        number,
                        f"job template {number}",
                        is_current,
                        objects.job_template_pods(job_template),
                        states.get(number) or {},
                        clip,
                    )
                )
            if not seen_current:
                own = objects.job_template_pods(objects.workload_template(workload))
                entries.append(
                    self._entry(
                        None, "current job template", True, own, {"note": "never seen producing a successful Job"}, clip
                    )
                )
            return entries, target
        current_entry = objects.current_history_entry(workload, history)
        for item in history:
            revision = objects.revision(item)
            state = states.get(revision) or states.get(str(revision)) or {}
            entry = self._entry(
                revision,
                str(objects.meta(item).get("name")),
                item is current_entry,
                objects.revision_template(item),
                state,
                clip,
            )
            status = item.get("status") or {}
            if item.get("kind") == "ReplicaSet":
                entry.update(
                    replicaset=entry["name"], replicas=status.get("replicas", 0), ready=status.get("readyReplicas", 0)
                )
            else:
                made = [pod for pod in pods if objects.made_from(pod, item)]
                entry.update(replicas=len(made), ready=sum(1 for pod in made if objects.is_ready(pod)))
            entry.update(
                created=objects.meta(item).get("creationTimestamp"),
                change_cause=clip.text(objects.annotations_of(item).get(k8s.CHANGE_CAUSE_ANNOTATION)) or None,
            )
            entries.append(entry)
        return entries, target

    def _entry(
        self,
        number: int | None,
        name: str,
        current: bool,
        pod_template: dict[str, Any],
        state: dict[str, Any],
        clip: _Clip,
    ) -> dict[str, Any]:
        spec = pod_template.get("spec") or {}
        containers = [
            _container_view(c, clip, self.access, env_values=False)
            | ({"init": True} if field == "initContainers" else {})
            for field in objects.CONTAINER_FIELDS
            for c in spec.get(field) or []
        ]
        return {
            "revision": number,
            "name": name,
            "current": current,
            "known_good": state.get("known_good"),
            "known_bad": bool(state.get("known_bad")),
            "note": clip.text(state.get("note")) or None,
            "containers": containers,
            "_template": pod_template,
        }

    @tool(no_data="refs")
    def get_config_refs(self, namespace: str, kind: str, name: str) -> tuple[Any, bool]:
        """List the ConfigMaps and Secrets a workload's pods reference, their keys (never values), and what is missing.

        Args:
            namespace: namespace of the workload.
            kind: Pod, Deployment, ReplicaSet or Job.
            name: workload name.

        Returns:
            {ok, data: {refs: [{kind, name, exists, optional, keys, referenced_keys, missing_keys,
            used_by}], missing: ["ConfigMap app-config not found", ...]}}.
        """
        self._namespace(namespace)
        clip = _Clip(self.access.redactor)
        obj = self.access.get(k8s.canonical_kind(kind), namespace, name)
        refs = objects.config_refs(obj)
        entries, missing = [], []
        for (ref_kind, ref_name), ref in sorted(refs.items()):
            entry: dict[str, Any] = {
                "kind": ref_kind,
                "name": ref_name,
                "optional": ref["optional"],
                "referenced_keys": sorted(ref["keys"]),
                "used_by": sorted(ref["used_by"]),
            }
            try:
                keys = self._keys(ref_kind, namespace, ref_name)
            except ApiCallError as error:
                if error.status != 404:
                    entry.update(exists=None, error=str(error))
                    entries.append(entry)
                    continue
                keys = None
            if keys is None:
                entry.update(exists=False, keys=[], missing_keys=sorted(ref["keys"]))
                if not ref["optional"]:
                    missing.append(f"{ref_kind} {ref_name} not found")
            else:
                absent = sorted(ref["keys"] - set(keys))
                entry.update(exists=True, keys=clip.items(keys, MAX_KEYS), missing_keys=absent)
                if absent and not ref["optional"]:
                    missing.append(f"{ref_kind} {ref_name} has no key {', '.join(absent)}")
            entries.append(entry)
        return {"refs": entries, "missing": missing}, clip.truncated

    def _keys(self, kind: str, namespace: str, name: str) -> list[str]:
        if kind == "Secret":
            return self.access.secret_keys(namespace, name)
        config_map = self.access.get("ConfigMap", namespace, name)
        return sorted(set(config_map.get("data") or {}) | set(config_map.get("binaryData") or {}))

    @tool(no_data="pods")
    def list_pods(self, namespace: str, workload_kind: str, workload_name: str) -> tuple[Any, bool]:
        """List the pods of a Deployment, ReplicaSet or Job with their state (oldest first).

        Args:
            namespace: namespace of the workload.
            workload_kind: Deployment, ReplicaSet, Job (or Pod).
            workload_name: workload name.

        Returns:
            {ok, data: {pods: [{name, phase, ready, restarts, reason, node, revision_hash, created, deleting}]}}.
        """
        self._namespace(namespace)
        clip = _Clip(self.access.redactor)
        workload = self.access.get(k8s.canonical_kind(workload_kind), namespace, workload_name)
        pods = sorted(self.access.pods_of(workload), key=lambda p: objects.meta(p).get("creationTimestamp") or "")
        return {"pods": [_pod_row(pod, clip) for pod in clip.last(pods, MAX_PODS)]}, clip.truncated


# --- views ------------------------------------------------------------------------------------


def _pick_container(pod: dict[str, Any]) -> str:
    """The container worth reading: a failing init container first, then one not ready or restarted."""
    status = pod.get("status") or {}
    for init in status.get("initContainerStatuses") or []:
        terminated = (init.get("state") or {}).get("terminated") or {}
        if not init.get("ready") and (init.get("restartCount", 0) > 0 or terminated.get("exitCode", 0) != 0):
            return str(init.get("name"))
    for container in status.get("containerStatuses") or []:
        if not container.get("ready") or container.get("restartCount", 0) > 0:
            return str(container.get("name"))
    names = [str(c.get("name")) for c in (pod.get("spec") or {}).get("containers") or []]
    if not names:
        raise _Refusal("the pod has no containers")
    return names[0]


def _state_view(state: dict[str, Any] | None, clip: _Clip) -> dict[str, Any] | None:
    if not state:
        return None
    for name in ("waiting", "running", "terminated"):
        if name in state:
            detail = state[name] or {}
            view: dict[str, Any] = {"state": name}
            for key in ("reason", "exitCode", "signal", "startedAt", "finishedAt"):
                if detail.get(key) is not None:
                    view[key] = detail[key]
            if detail.get("message"):
                view["message"] = clip.text(detail["message"])
            return view
    return None


def _container_view(
    container: dict[str, Any], clip: _Clip, access: ClusterAccess, *, env_values: bool = True
) -> dict[str, Any]:
    view: dict[str, Any] = {"name": container.get("name"), "image": container.get("image")}
    for key in ("command", "args"):
        if container.get(key):
            view[key] = [clip.text(item, 200) for item in clip.items(container[key], 30)]
    env = container.get("env") or []
    if env_values and env:
        view["env"] = clip.items(redact_env(env, access.redactor), MAX_LIST_ITEMS)
    elif env:
        view["env_names"] = clip.items([str(item.get("name")) for item in env], MAX_LIST_ITEMS)
    if container.get("envFrom"):
        view["envFrom"] = [
            {key: (source.get(key) or {}).get("name") for key in ("configMapRef", "secretRef") if source.get(key)}
            for source in container["envFrom"]
        ]
    if container.get("resources"):
        view["resources"] = container["resources"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if container.get(probe):
            view[probe] = container[probe]
    return view


def _status_view(status: dict[str, Any], clip: _Clip) -> dict[str, Any]:
    return {
        "name": status.get("name"),
        "ready": status.get("ready"),
        "restartCount": status.get("restartCount", 0),
        "image": status.get("image"),
        "state": _state_view(status.get("state"), clip),
        "lastState": _state_view(status.get("lastState"), clip),
    }


def _conditions(obj: dict[str, Any], clip: _Clip) -> list[dict[str, Any]]:
    return [
        {
            key: (clip.text(value) if key == "message" else value)
            for key, value in condition.items()
            if key in {"type", "status", "reason", "message", "lastTransitionTime"}
        }
        for condition in (obj.get("status") or {}).get("conditions") or []
    ]


def _volumes(spec: dict[str, Any]) -> list[dict[str, Any]]:
    shown = []
    for volume in spec.get("volumes") or []:
        source = next((key for key in volume if key != "name"), "unknown")
        detail = volume.get(source) or {}
        target = None
        if isinstance(detail, dict):
            target = detail.get("name") or detail.get("secretName") or detail.get("claimName")
        shown.append({"name": volume.get("name"), "source": f"{source}/{target}" if target else source})
    return shown


def _template_view(obj: dict[str, Any], clip: _Clip, access: ClusterAccess) -> dict[str, Any]:
    template = objects.pod_template(obj)
    spec = template.get("spec") or {}
    view: dict[str, Any] = {
        "labels": (template.get("metadata") or {}).get("labels") or {},
        "containers": [_container_view(c, clip, access) for c in spec.get("containers") or []],
    }
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    if annotations:
        view["annotations"] = {key: clip.text(value) for key, value in annotations.items()}
    if spec.get("initContainers"):
        view["initContainers"] = [_container_view(c, clip, access) for c in spec["initContainers"]]
    if spec.get("volumes"):
        view["volumes"] = _volumes(spec)
    for key in ("restartPolicy", "serviceAccountName", "nodeSelector"):
        if spec.get(key):
            view[key] = spec[key]
    return view


def _describe(obj: dict[str, Any], clip: _Clip, access: ClusterAccess) -> dict[str, Any]:
    kind = obj.get("kind")
    metadata = objects.meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    owner = objects.controller_ref(obj)
    view: dict[str, Any] = {
        "kind": kind,
        "name": metadata.get("name"),
        "namespace": metadata.get("namespace"),
        "labels": metadata.get("labels") or {},
        "created": metadata.get("creationTimestamp"),
        "generation": metadata.get("generation"),
    }
    if owner:
        view["owner"] = f"{owner.get('kind')}/{owner.get('name')}"
    managers = objects.managed_by(obj)
    if managers:
        view["managed_by"] = managers
    if objects.is_marked(obj, access.settings.protected_label):
        view["protected"] = True
    if kind == "Pod":
        view.update(
            node=spec.get("nodeName"),
            phase=status.get("phase"),
            reason=status.get("reason"),
            message=clip.text(status.get("message")) or None,
            restartPolicy=spec.get("restartPolicy"),
            containers=[_container_view(c, clip, access) for c in spec.get("containers") or []],
            containerStatuses=[_status_view(s, clip) for s in status.get("containerStatuses") or []],
            conditions=_conditions(obj, clip),
        )
        if spec.get("initContainers"):
            view["initContainers"] = [_container_view(c, clip, access) for c in spec["initContainers"]]
            view["initContainerStatuses"] = [_status_view(s, clip) for s in status.get("initContainerStatuses") or []]
        if spec.get("volumes"):
            view["volumes"] = _volumes(spec)
        return view
    if kind in {"Deployment", "ReplicaSet"}:
        view.update(revision=objects.revision(obj), replicas=spec.get("replicas"))
        if kind == "Deployment":
            view.update(
                strategy=(spec.get("strategy") or {}).get("type"),
                paused=spec.get("paused", False),
                progressDeadlineSeconds=spec.get("progressDeadlineSeconds"),
            )
        counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "unavailableReplicas")
        view["status"] = {key: status.get(key, 0) for key in counts} | {
            "observedGeneration": status.get("observedGeneration")
        }
    elif kind == "StatefulSet":
        view.update(
            replicas=spec.get("replicas"),
            updateStrategy=spec.get("updateStrategy"),
            podManagementPolicy=spec.get("podManagementPolicy"),
        )
        fields = (
            "replicas",
            "readyReplicas",
            "currentReplicas",
            "updatedReplicas",
            "availableReplicas",
            "currentRevision",
            "updateRevision",
            "observedGeneration",
        )
        view["status"] = {key: status.get(key) for key in fields}
    elif kind == "DaemonSet":
        view["updateStrategy"] = spec.get("updateStrategy")
        fields = (
            "desiredNumberScheduled",
            "currentNumberScheduled",
            "numberReady",
            "updatedNumberScheduled",
            "numberAvailable",
            "numberUnavailable",
            "numberMisscheduled",
            "observedGeneration",
        )
        view["status"] = {key: status.get(key, 0) for key in fields}
    elif kind == "Job":
        for key in ("completions", "parallelism", "backoffLimit", "activeDeadlineSeconds", "suspend"):
            if key in spec:
                view[key] = spec[key]
        shown = ("active", "ready", "succeeded", "failed", "startTime", "completionTime")
        view["status"] = {key: status[key] for key in shown if key in status}
    elif kind == "CronJob":
        for key in (
            "schedule",
            "timeZone",
            "suspend",
            "concurrencyPolicy",
            "startingDeadlineSeconds",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
        ):
            if key in spec:
                view[key] = spec[key]
        view["status"] = {
            "active": [ref.get("name") for ref in clip.items(status.get("active"), 10)],
            "lastScheduleTime": status.get("lastScheduleTime"),
            "lastSuccessfulTime": status.get("lastSuccessfulTime"),
        }
        job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        view["jobTemplate"] = {
            key: job_spec[key]
            for key in ("backoffLimit", "completions", "parallelism", "activeDeadlineSeconds")
            if key in job_spec
        }
    view["selector"] = objects.label_selector(spec.get("selector"))
    view["template"] = _template_view(obj, clip, access)
    view["conditions"] = _conditions(obj, clip)
    return view


def _pod_row(pod: dict[str, Any], clip: _Clip) -> dict[str, Any]:
    metadata = objects.meta(pod)
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    reason = None
    for container in statuses:
        state = container.get("state") or {}
        detail = state.get("waiting") or state.get("terminated")
        if detail and not container.get("ready"):
            reason = detail.get("reason")
            break
        last = (container.get("lastState") or {}).get("terminated")
        if last and reason is None and not container.get("ready"):
            reason = last.get("reason")
    return {
        "name": metadata.get("name"),
        "phase": status.get("phase"),
        "ready": f"{sum(1 for s in statuses if s.get('ready'))}/{len((pod.get('spec') or {}).get('containers') or [])}",
        "restarts": sum(int(s.get("restartCount", 0)) for s in statuses),
        "reason": reason or status.get("reason"),
        "node": (pod.get("spec") or {}).get("nodeName"),
        "revision_hash": objects.labels_of(pod).get(k8s.POD_TEMPLATE_HASH_LABEL),
        "created": metadata.get("creationTimestamp"),
        "deleting": metadata.get("deletionTimestamp") is not None,
    }
