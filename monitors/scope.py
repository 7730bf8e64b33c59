"""What AMOS may report on: watched namespaces, never system or its own, and nothing opted out.

An object opts out with the ignore annotation set to "true" (`amos.io/ignore` by
default), on the pod itself or on its workload. Workload annotations come from
the Deployment and Job watches, so a pod's verdict needs no API call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from core.config import Settings
from core.models import ObjectRef


def watched_namespaces(settings: Settings) -> list[str] | None:
    """The namespaces to watch one by one, or None to watch all namespaces (and filter)."""
    if not settings.namespaces:
        return None
    return [ns for ns in settings.namespaces if namespace_in_scope(ns, settings)]


def namespace_in_scope(namespace: str, settings: Settings) -> bool:
    if namespace in settings.excluded_namespaces or namespace == settings.own_namespace:
        return False
    return not settings.namespaces or namespace in settings.namespaces


def opted_out(annotations: Mapping[str, str], settings: Settings) -> bool:
    return annotations.get(settings.ignore_annotation, "").strip().lower() == "true"


class Scope:
    """Scope decisions plus the set of opted-out workloads; safe to share between watch threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._opted_out: set[ObjectRef] = set()
        self._lock = threading.Lock()

    def note_workload(self, workload: ObjectRef, annotations: Mapping[str, str]) -> bool:
        """Record a Deployment's or Job's opt-out; return whether it is opted out."""
        out = opted_out(annotations, self.settings)
        with self._lock:
            if out:
                self._opted_out.add(workload)
            else:
                self._opted_out.discard(workload)
        return out

    def forget_workload(self, workload: ObjectRef) -> None:
        with self._lock:
            self._opted_out.discard(workload)

    def replace_workloads(self, kind: str, namespace: str | None, opted: Iterable[ObjectRef]) -> None:
        """After a re-list: the opted-out `kind` objects of `namespace` (all when None) are exactly these."""
        with self._lock:
            self._opted_out = {
                ref
                for ref in self._opted_out
                if ref.kind != kind or (namespace is not None and ref.namespace != namespace)
            } | set(opted)

    def covers(self, workload: ObjectRef, annotations: Mapping[str, str]) -> bool:
        """Whether faults of an object with these annotations, owned by `workload`, may be reported."""
        if not namespace_in_scope(workload.namespace, self.settings) or opted_out(annotations, self.settings):
            return False
        with self._lock:
            return workload not in self._opted_out
