"""A stable identity for a pod template, so a Job's template can be matched with its CronJob's jobTemplate.

Deployments, StatefulSets and DaemonSets name their templates (pod-template-hash,
ControllerRevision); a CronJob does not, so AMOS hashes the pod spec itself. Only
`spec` counts: the Job controller adds labels to a Job's template metadata, and
the API server defaults a Job's pod spec and a CronJob's jobTemplate pod spec
alike, so `hash_pod_template(job["spec"]["template"])` equals
`hash_pod_template(cron_job["spec"]["jobTemplate"]["spec"]["template"])` for
a Job made from that jobTemplate. Inputs are API JSON (camelCase dicts).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def hash_pod_template(template: Mapping[str, Any]) -> str:
    """16 hex digits of the SHA-256 of the template's pod spec, keys sorted."""
    canonical = json.dumps(template.get("spec") or {}, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
