"""Compact views of watched objects, built from the API's own JSON (camelCase dicts).

A full Pod is 5-15 KB of JSON, most of it managedFields and spec that no failure
pattern reads; a view keeps only what `patterns` and `owners` need, so thousands
of watched objects stay cheap. Views never talk to the cluster.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from core import k8s
from monitors.templates import hash_pod_template

_POD_CONDITIONS = frozenset({"PodScheduled", "ContainersReady"})
_DEPLOYMENT_CONDITIONS = frozenset({"Progressing", "Available"})
_STATEFUL_SET_CONDITIONS = frozenset({"Progressing"})  # rarely set; outage detection counts it as a Deployment's
_JOB_CONDITIONS = frozenset({"Failed", "Complete"})
_CREATE_CONDITIONS = frozenset({"ReplicaFailure"})  # set by the ReplicaSet controller when it cannot create pods

ApiObject = Mapping[str, Any]


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class OwnerView(View):
    kind: str
    name: str
    controller: bool = False


class ConditionView(View):
    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition: datetime | None = None


class TerminationView(View):
    reason: str = ""
    exit_code: int = 0
    finished_at: datetime | None = None


class ContainerView(View):
    name: str
    init: bool = False
    ready: bool = False
    restart_count: int = 0
    running: bool = False
    waiting_reason: str | None = None
    waiting_message: str = ""
    started_at: datetime | None = None  # when the current run started, if it is running
    terminated: TerminationView | None = None  # current state
    last_terminated: TerminationView | None = None  # lastState: why the previous run ended
    liveness_probe: bool = False  # from the spec: the kubelet kills it when the probe fails
    readiness_probe: bool = False
    readiness_delay_seconds: float = 0.0  # initialDelaySeconds + periodSeconds x failureThreshold of that probe
    restartable: bool = False  # an init container with restartPolicy Always: a sidecar, not a step before the app


class ObjectView(View):
    namespace: str
    name: str
    uid: str = ""
    annotations: dict[str, str] = {}  # only the ones asked for (the opt-out annotation)
    owners: tuple[OwnerView, ...] = ()
    conditions: tuple[ConditionView, ...] = ()

    def condition(self, kind: str) -> ConditionView | None:
        return next((c for c in self.conditions if c.type == kind), None)

    @property
    def controller(self) -> OwnerView | None:
        return next((o for o in self.owners if o.controller), None)


class PodView(ObjectView):
    phase: str = "Pending"
    node_name: str | None = None
    pod_template_hash: str | None = None
    created: datetime | None = None
    deleted: datetime | None = None  # deletionTimestamp: the pod is on its way out
    initialized: bool = True  # the Initialized condition: every (non-sidecar) init container has completed
    containers: tuple[ContainerView, ...] = ()

    @classmethod
    def from_api(cls, obj: ApiObject, keep_annotations: Collection[str] = ()) -> PodView:
        meta, spec, status = _parts(obj)
        init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
        app_specs = {c.get("name"): c for c in spec.get("containers") or []}
        initialized = next((c for c in status.get("conditions") or [] if c.get("type") == "Initialized"), None)
        return cls(
            **_object_fields(meta, status, keep_annotations, _POD_CONDITIONS),
            phase=status.get("phase") or "Pending",
            node_name=spec.get("nodeName"),
            pod_template_hash=(meta.get("labels") or {}).get(k8s.POD_TEMPLATE_HASH_LABEL),
            created=meta.get("creationTimestamp"),
            deleted=meta.get("deletionTimestamp"),
            initialized=initialized is None or initialized.get("status") == "True",
            containers=tuple(
                [_container(c, init_specs.get(c["name"]), init=True) for c in status.get("initContainerStatuses") or []]
                + [_container(c, app_specs.get(c["name"]), init=False) for c in status.get("containerStatuses") or []]
            ),
        )

    @property
    def app_containers(self) -> tuple[ContainerView, ...]:
        return tuple(c for c in self.containers if not c.init)


class ReplicaSetView(ObjectView):
    revision: str | None = None
    template_hash: str | None = None  # its pod-template-hash label: the template's identity

    @property
    def deployment(self) -> str | None:
        owner = self.controller
        return owner.name if owner is not None and owner.kind == "Deployment" else None

    @classmethod
    def from_api(cls, obj: ApiObject, keep_annotations: Collection[str] = ()) -> ReplicaSetView:
        meta, _, status = _parts(obj)
        return cls(
            **_object_fields(meta, status, keep_annotations, _CREATE_CONDITIONS),
            revision=(meta.get("annotations") or {}).get(k8s.REVISION_ANNOTATION),
            template_hash=(meta.get("labels") or {}).get(k8s.POD_TEMPLATE_HASH_LABEL),
        )


class DeploymentView(ObjectView):
    revision: str | None = None
    generation: int = 0
    observed_generation: int = 0
    replicas: int = 1
    ready_replicas: int = 0
    available_replicas: int = 0
    updated_replicas: int = 0
    unavailable_replicas: int = 0

    @classmethod
    def from_api(cls, obj: ApiObject, keep_annotations: Collection[str] = ()) -> DeploymentView:
        meta, spec, status = _parts(obj)
        replicas = spec.get("replicas")
        return cls(
            **_object_fields(meta, status, keep_annotations, _DEPLOYMENT_CONDITIONS),
            revision=(meta.get("annotations") or {}).get(k8s.REVISION_ANNOTATION),
            generation=meta.get("generation") or 0,
            observed_generation=status.get("observedGeneration") or 0,
            replicas=1 if replicas is None else replicas,
            ready_replicas=status.get("readyReplicas") or 0,
            available_replicas=status.get("availableReplicas") or 0,
            updated_replicas=status.get("updatedReplicas") or 0,
            unavailable_replicas=status.get("unavailableReplicas") or 0,
        )


class JobView(ObjectView):
    created: datetime | None = None
    failed: int = 0
    active: int = 0
    succeeded_pods: int = 0
    parallelism: int = 1
    completions: int | None = None
    template_hash: str = ""  # of its pod template, comparable with its CronJob's jobTemplate (see `templates`)

    @property
    def cron_job(self) -> str | None:
        owner = self.controller
        return owner.name if owner is not None and owner.kind == "CronJob" else None

    @property
    def succeeded(self) -> bool:
        complete = self.condition("Complete")
        return complete is not None and complete.status == "True"

    @property
    def has_failed(self) -> bool:
        failed = self.condition("Failed")
        return failed is not None and failed.status == "True"

    @classmethod
    def from_api(cls, obj: ApiObject, keep_annotations: Collection[str] = ()) -> JobView:
        meta, spec, status = _parts(obj)
        return cls(
            **_object_fields(meta, status, keep_annotations, _JOB_CONDITIONS),
            created=meta.get("creationTimestamp"),
            failed=status.get("failed") or 0,
            active=status.get("active") or 0,
            succeeded_pods=status.get("succeeded") or 0,
            parallelism=1 if spec.get("parallelism") is None else spec["parallelism"],
            completions=spec.get("completions"),
            template_hash=hash_pod_template(spec.get("template") or {}),
        )


class StatefulSetView(ObjectView):
    generation: int = 0
    observed_generation: int = 0
    replicas: int = 1
    created_replicas: int = 0  # status.replicas: pods the controller has created
    ready_replicas: int = 0
    available_replicas: int = 0
    updated_replicas: int = 0
    current_revision: str = ""
    update_revision: str = ""
    partition: int = 0
    on_delete: bool = False  # updateStrategy OnDelete: the controller never replaces pods by itself

    @classmethod
    def from_api(cls, obj: ApiObject, keep_annotations: Collection[str] = ()) -> StatefulSetView:
        meta, spec, status = _parts(obj)
        strategy = spec.get("updateStrategy") or {}
        replicas = spec.get("replicas")
        return cls(
            **_object_fields(meta, status, keep_annotations, _STATEFUL_SET_CONDITIONS),
            generation=meta.get("generation") or 0,
            observed_generation=status.get("observedGeneration") or 0,
            replicas=1 if replicas is None else replicas,
            created_replicas=status.get("replicas") or 0,
            ready_replicas=status.get("readyReplicas") or 0,
            available_replicas=status.get("availableReplicas") or 0,
            updated_replicas=status.get("updatedReplicas") or 0,
            current_revision=status.get("currentRevision") or "",
            update_revision=status.get("updateRevision") or "",
            partition=(strategy.get("rollingUpdate") or {}).get("partition") or 0,
            on_delete=strategy.get("type") == "OnDelete",
        )


class DaemonSetView(ObjectView):
    generation: int = 0
    observed_generation: int = 0
    desired: int = 0  # desiredNumberScheduled
    scheduled: int = 0  # currentNumberScheduled: nodes running a pod of it
    ready: int = 0
    available: int = 0
    unavailable: int = 0
    updated: int = 0  # updatedNumberScheduled
    on_delete: bool = False

    @classmethod
    def from_api(cls, obj: ApiObject, keep_annotations: Collection[str] = ()) -> DaemonSetView:
        meta, spec, status = _parts(obj)
        return cls(
            **_object_fields(meta, status, keep_annotations, frozenset()),
            generation=meta.get("generation") or 0,
            observed_generation=status.get("observedGeneration") or 0,
            desired=status.get("desiredNumberScheduled") or 0,
            scheduled=status.get("currentNumberScheduled") or 0,
            ready=status.get("numberReady") or 0,
            available=status.get("numberAvailable") or 0,
            unavailable=status.get("numberUnavailable") or 0,
            updated=status.get("updatedNumberScheduled") or 0,
            on_delete=(spec.get("updateStrategy") or {}).get("type") == "OnDelete",
        )


class EventView(View):
    """An Event about a workload or a pod (the watch asks only for FailedCreate and Unhealthy)."""

    namespace: str
    name: str
    reason: str
    message: str = ""
    kind: str  # of the object it is about
    object_name: str
    field_path: str = ""  # `spec.containers{app}`: the container a kubelet Event is about
    last_seen: datetime | None = None

    @property
    def container(self) -> str | None:
        start, end = self.field_path.find("{"), self.field_path.rfind("}")
        return self.field_path[start + 1 : end] if 0 <= start < end else None

    @classmethod
    def from_api(cls, obj: ApiObject) -> EventView:
        meta, involved = obj.get("metadata") or {}, obj.get("involvedObject") or {}
        return cls(
            namespace=meta.get("namespace") or "",
            name=meta["name"],
            reason=obj.get("reason") or "",
            message=obj.get("message") or "",
            kind=involved.get("kind") or "",
            object_name=involved.get("name") or "",
            field_path=involved.get("fieldPath") or "",
            last_seen=k8s.event_time(obj),
        )


class CronJobView(ObjectView):
    @classmethod
    def from_api(cls, obj: ApiObject, keep_annotations: Collection[str] = ()) -> CronJobView:
        meta, _, status = _parts(obj)
        return cls(**_object_fields(meta, status, keep_annotations, frozenset()))


class ControllerRevisionView(ObjectView):
    """A StatefulSet's or DaemonSet's stored template; its name is the template's identity."""

    revision: int = 0

    @classmethod
    def from_api(cls, obj: ApiObject, keep_annotations: Collection[str] = ()) -> ControllerRevisionView:
        meta = obj.get("metadata") or {}
        return cls(**_object_fields(meta, {}, keep_annotations, frozenset()), revision=obj.get("revision") or 0)


def _parts(obj: ApiObject) -> tuple[ApiObject, ApiObject, ApiObject]:
    return obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}


def _object_fields(
    meta: ApiObject, status: ApiObject, keep_annotations: Collection[str], conditions: frozenset[str]
) -> dict[str, Any]:
    annotations = meta.get("annotations") or {}
    return {
        "namespace": meta.get("namespace") or "",
        "name": meta["name"],
        "uid": meta.get("uid") or "",
        "annotations": {key: annotations[key] for key in keep_annotations if key in annotations},
        "owners": tuple(
            OwnerView(kind=o["kind"], name=o["name"], controller=bool(o.get("controller")))
            for o in meta.get("ownerReferences") or []
        ),
        "conditions": tuple(
            ConditionView(
                type=c["type"],
                status=c.get("status") or "Unknown",
                reason=c.get("reason") or "",
                message=c.get("message") or "",
                last_transition=c.get("lastTransitionTime"),
            )
            for c in status.get("conditions") or []
            if c.get("type") in conditions
        ),
    }


def _container(status: ApiObject, spec: ApiObject | None, *, init: bool) -> ContainerView:
    state = status.get("state") or {}
    waiting = state.get("waiting") or {}
    spec = spec or {}
    return ContainerView(
        name=status["name"],
        init=init,
        ready=bool(status.get("ready")),
        restart_count=status.get("restartCount") or 0,
        running="running" in state,
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message") or "",
        started_at=(state.get("running") or {}).get("startedAt"),
        terminated=_termination(state.get("terminated")),
        last_terminated=_termination((status.get("lastState") or {}).get("terminated")),
        liveness_probe=bool(spec.get("livenessProbe")),
        readiness_probe=bool(spec.get("readinessProbe")),
        readiness_delay_seconds=_probe_delay(spec.get("readinessProbe")),
        restartable=init and spec.get("restartPolicy") == "Always",
    )


def _probe_delay(probe: ApiObject | None) -> float:
    """How long a probe may take to pass before it can have failed for good (the API's defaults: 10 s x 3)."""
    if not probe:
        return 0.0
    period, threshold = probe.get("periodSeconds") or 10, probe.get("failureThreshold") or 3
    return float((probe.get("initialDelaySeconds") or 0) + period * threshold)


def _termination(terminated: ApiObject | None) -> TerminationView | None:
    if not terminated:
        return None
    return TerminationView(
        reason=terminated.get("reason") or "",
        exit_code=terminated.get("exitCode") or 0,
        finished_at=terminated.get("finishedAt"),
    )
