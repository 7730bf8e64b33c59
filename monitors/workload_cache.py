"""The watched workloads' health, per namespace, for outage detection without an API call per incident.

The watch streams keep it current (a list replaces a kind, each event updates one workload); the
orchestrator's guard rails read it from their own threads, hence the lock. Opted-out workloads stay
in it: they still run in the namespace, and the API listing counts them too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from core.workload_health import WorkloadHealth
from monitors.trim import DaemonSetView, DeploymentView, JobView, StatefulSetView

HealthView = DeploymentView | StatefulSetView | DaemonSetView | JobView
HEALTH_VIEWS = (DeploymentView, StatefulSetView, DaemonSetView, JobView)


def health_of(view: HealthView) -> WorkloadHealth:
    """What `outage.workload_failing` reads, from a view (the same figures `WorkloadHealth.from_api` reads)."""
    if isinstance(view, DaemonSetView):
        return WorkloadHealth(kind="DaemonSet", name=view.name, desired=view.desired, ready=view.ready)
    if isinstance(view, JobView):
        return WorkloadHealth(kind="Job", name=view.name, failed=view.has_failed, owned=bool(view.owners))
    progressing = view.condition("Progressing")
    return WorkloadHealth(
        kind="Deployment" if isinstance(view, DeploymentView) else "StatefulSet",
        name=view.name,
        desired=view.replicas,
        ready=view.ready_replicas,
        stuck=progressing is not None and progressing.status == "False",
    )


class WorkloadCache:
    def __init__(self) -> None:
        self._by_namespace: dict[str, dict[tuple[str, str], WorkloadHealth]] = {}
        self._lock = threading.Lock()

    def note(self, event_type: str, view: HealthView) -> None:
        health = health_of(view)
        with self._lock:
            workloads = self._by_namespace.setdefault(view.namespace, {})
            if event_type == "DELETED":
                workloads.pop((health.kind, health.name), None)
            else:
                workloads[(health.kind, health.name)] = health

    def replace(self, kind: str, namespace: str | None, views: Iterable[HealthView]) -> None:
        """A fresh list of `kind` in `namespace` (None: all of them): what it lacks is gone."""
        listed = [(view.namespace, health_of(view)) for view in views]
        with self._lock:
            for name, workloads in self._by_namespace.items():
                if namespace in (None, name):
                    for key in [key for key in workloads if key[0] == kind]:
                        del workloads[key]
            for view_namespace, health in listed:
                self._by_namespace.setdefault(view_namespace, {})[(health.kind, health.name)] = health

    def of(self, namespace: str) -> tuple[WorkloadHealth, ...]:
        with self._lock:
            return tuple((self._by_namespace.get(namespace) or {}).values())
