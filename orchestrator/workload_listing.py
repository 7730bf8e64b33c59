"""The API's answer to "what workloads does this namespace have?", where no watch holds them.

adk web, a one-shot diagnose and an orchestrator built without monitors have no watch cache; they
list the namespace's workloads on each incident, as `WorkloadHealth` like the cache gives them.
"""

from __future__ import annotations

from core.workload_health import HEALTH_KINDS, ListingState, WorkloadHealth, WorkloadListing
from tools.cluster import ApiCallError, ClusterAccess


class ApiWorkloads:
    """A `WorkloadHealthSource` that lists each kind that counts (one call per kind)."""

    def __init__(self, access: ClusterAccess) -> None:
        self.access = access

    def workloads(self, namespace: str) -> WorkloadListing:
        try:
            listed = [self.access.list_objects(kind, namespace) for kind in HEALTH_KINDS]
        except ApiCallError as error:  # forbidden, API server gone: outage detection is skipped, the fix goes on
            return WorkloadListing(namespace=namespace, state=ListingState.UNREADABLE, reason=str(error))
        workloads = tuple(WorkloadHealth.from_api(obj) for objects in listed for obj in objects)
        return WorkloadListing(namespace=namespace, state=ListingState.LISTED, workloads=workloads)
