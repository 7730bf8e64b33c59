"""The revisions each workload has: which template is current, by name and number, without an API call.

Fed by the ReplicaSet watch (a Deployment's revisions: revision annotation and
pod-template-hash) and the ControllerRevision watch (a StatefulSet's or
DaemonSet's: name and revision number). A DaemonSet's status does not name its
current revision; its controller gives the current template's ControllerRevision
the highest number, so that one is current.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import NamedTuple

from core.models import ObjectRef
from monitors.trim import ControllerRevisionView, ReplicaSetView


class Revision(NamedTuple):
    source: ObjectRef  # the ReplicaSet or ControllerRevision holding the template
    number: int | None
    template_hash: str


class RevisionIndex:
    """Workload -> its revisions; safe to share between watch threads."""

    def __init__(self) -> None:
        self._revisions: dict[ObjectRef, dict[str, Revision]] = {}  # workload -> source name -> revision
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(len(r) for r in self._revisions.values())

    def observe(self, view: ReplicaSetView | ControllerRevisionView) -> None:
        entry = _entry(view)
        if entry is None:
            return
        workload, revision = entry
        with self._lock:
            self._revisions.setdefault(workload, {})[revision.source.name] = revision

    def forget(self, view: ReplicaSetView | ControllerRevisionView) -> None:
        entry = _entry(view)
        if entry is None:
            return
        with self._lock:
            revisions = self._revisions.get(entry[0], {})
            revisions.pop(entry[1].source.name, None)
            if not revisions:
                self._revisions.pop(entry[0], None)

    def replace(
        self, kind: str, namespace: str | None, views: Iterable[ReplicaSetView | ControllerRevisionView]
    ) -> None:
        """After a re-list: the `kind` sources of `namespace` (all when None) are exactly these."""
        fresh = [e for e in (_entry(v) for v in views) if e is not None]
        with self._lock:
            for revisions in self._revisions.values():
                for name in [
                    n
                    for n, r in revisions.items()
                    if r.source.kind == kind and (namespace is None or r.source.namespace == namespace)
                ]:
                    del revisions[name]
            for workload, revision in fresh:
                self._revisions.setdefault(workload, {})[revision.source.name] = revision
            self._revisions = {w: r for w, r in self._revisions.items() if r}

    def by_number(self, workload: ObjectRef, number: int) -> Revision | None:
        """A Deployment's ReplicaSet of that revision."""
        with self._lock:
            return next((r for r in self._revisions.get(workload, {}).values() if r.number == number), None)

    def by_name(self, workload: ObjectRef, name: str) -> Revision | None:
        """A StatefulSet's ControllerRevision named in its status (currentRevision, updateRevision)."""
        with self._lock:
            return self._revisions.get(workload, {}).get(name)

    def newest(self, workload: ObjectRef) -> Revision | None:
        with self._lock:
            return max(self._revisions.get(workload, {}).values(), key=lambda r: r.number or 0, default=None)


def _entry(view: ReplicaSetView | ControllerRevisionView) -> tuple[ObjectRef, Revision] | None:
    owner = view.controller
    if owner is None:
        return None
    workload = ObjectRef(kind=owner.kind, namespace=view.namespace, name=owner.name)
    if isinstance(view, ReplicaSetView):
        if owner.kind != "Deployment" or not view.template_hash:
            return None
        source = ObjectRef(kind="ReplicaSet", namespace=view.namespace, name=view.name)
        number = int(view.revision) if view.revision and view.revision.isdigit() else None
        return workload, Revision(source, number, view.template_hash)
    source = ObjectRef(kind="ControllerRevision", namespace=view.namespace, name=view.name)
    return workload, Revision(source, view.revision, view.name)
