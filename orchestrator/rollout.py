"""Has the rollout of a workload's current template finished? Pure readings of a workload, its history and pods.

Complete means, per kind: Deployment: every replica updated, ready and available. StatefulSet:
the ordered rollout done (`updatedReplicas` covers every ordinal at or above the partition,
`currentRevision == updateRevision` when there is no partition) and `readyReplicas == replicas`;
with `OnDelete`, every pod Ready. DaemonSet: `numberReady == desiredNumberScheduled` and
`updatedNumberScheduled == desiredNumberScheduled` (with `OnDelete`: every scheduled pod Ready and
none unavailable). A CronJob has no rollout: its runs made from the current job template are judged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.clock import parse_time
from tools import objects

_STATUS_COUNTS = (
    "replicas",
    "readyReplicas",
    "updatedReplicas",
    "availableReplicas",
    "desiredNumberScheduled",
    "numberReady",
    "updatedNumberScheduled",
    "numberUnavailable",
    "numberAvailable",
)


def current_pods(
    obj: dict[str, Any], history: list[dict[str, Any]], pods: list[dict[str, Any]]
) -> list[dict[str, Any]] | None:
    """The live pods of the workload's current template; None while the controller has not caught up.

    `history`: the ReplicaSets or ControllerRevisions of the workload; for a CronJob, the Jobs to judge.
    """
    live = [pod for pod in pods if not objects.meta(pod).get("deletionTimestamp")]
    kind = obj.get("kind")
    if kind == "Pod":
        return [obj]
    if kind == "Job":
        return [pod for pod in live if objects.owned_by(pod, obj)]
    if kind == "CronJob":
        return [pod for pod in live if any(objects.owned_by(pod, job) for job in history)]
    if not objects.observed(obj):
        return None
    if kind == "Deployment":
        revision = objects.revision(obj)
        newest = [rs for rs in history if objects.owned_by(rs, obj) and objects.revision(rs) == revision]
        if not newest:
            return None
        return [pod for pod in live if any(objects.owned_by(pod, rs) for rs in newest)]
    current = objects.current_history_entry(obj, history)
    if current is None:
        return None
    return [pod for pod in live if objects.owned_by(pod, obj) and objects.made_from(pod, current)]


def runs_to_judge(cronjob: dict[str, Any], jobs: list[dict[str, Any]], since: datetime) -> list[dict[str, Any]]:
    """The CronJob's Jobs started at or after `since` from its current job template, oldest first."""
    template = (objects.workload_template(cronjob).get("spec") or {}).get("template") or {}
    digest = objects.template_digest(template)
    horizon = since.replace(microsecond=0)
    found = []
    for job in jobs:
        created = parse_time(objects.meta(job).get("creationTimestamp"))
        if created is None or created < horizon or not objects.owned_by(job, cronjob):
            continue
        if objects.template_digest(objects.job_pod_template(job)) == digest:
            found.append(job)
    return sorted(found, key=lambda job: objects.meta(job).get("creationTimestamp") or "")


def rollout_complete(obj: dict[str, Any], current: list[dict[str, Any]]) -> tuple[bool, str]:
    """Whether a Deployment's, StatefulSet's or DaemonSet's rollout is complete, and a one-line summary.

    `current`: the pods of the current template (`current_pods`); every one of them must be Ready.
    """
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    count = {key: int(status.get(key) or 0) for key in _STATUS_COUNTS}
    every_pod_ready = all(objects.is_ready(pod) for pod in current)
    kind = obj.get("kind")
    if kind == "Deployment":
        desired = int(spec.get("replicas", 1))
        counted = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        ready_pods = sum(1 for pod in current if objects.is_ready(pod))
        summary = (
            f"{count['readyReplicas']}/{desired} replicas ready, {count['updatedReplicas']} updated, "
            f"{count['replicas']} in total"
        )
        return all(count[key] == desired for key in counted) and ready_pods == desired == len(current), summary
    strategy = spec.get("updateStrategy") or {}
    on_delete = strategy.get("type") == "OnDelete"
    if kind == "StatefulSet":
        desired = int(spec.get("replicas", 1))
        partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
        revisions = (status.get("currentRevision"), status.get("updateRevision"))
        summary = (
            f"{count['readyReplicas']}/{desired} replicas ready, {count['updatedReplicas']} on "
            f"{revisions[1]}, current {revisions[0]}"
        )
        ready = count["readyReplicas"] == desired == count["replicas"] and every_pod_ready
        if on_delete:
            return ready, summary + " (OnDelete)"
        if partition:
            return ready and count["updatedReplicas"] >= desired - partition, summary + f" (partition {partition})"
        done = ready and count["updatedReplicas"] == desired and revisions[0] == revisions[1] and bool(revisions[1])
        return done and len(current) == desired, summary
    desired = count["desiredNumberScheduled"]
    summary = (
        f"{count['numberReady']}/{desired} scheduled pods ready, {count['updatedNumberScheduled']} updated, "
        f"{count['numberUnavailable']} unavailable"
    )
    if on_delete:
        done = count["numberReady"] == desired and count["numberUnavailable"] == 0
        return done and every_pod_ready, summary + " (OnDelete)"
    done = count["numberReady"] == desired == count["updatedNumberScheduled"] and len(current) == desired
    return done and every_pod_ready, summary
