"""Snapshots fit one object: compressed, the oldest revisions left out first, the workload never; too big is
a clear refusal (AMOS then changes nothing). The last-applied annotation (a copy of the spec) is not kept."""

from __future__ import annotations

import base64
import gzip
import random
import string
from datetime import UTC, datetime
from typing import Any

import pytest

from core.k8s import LAST_APPLIED_ANNOTATION
from core.models import ObjectRef
from orchestrator.snapshots import MAX_STORED_BYTES, SnapshotStore, SnapshotTooLarge
from tools.objects import without_last_applied
from tools.snapshot import Snapshot

REF = ObjectRef(kind="Deployment", namespace="shop", name="web")


def noise(size: int, seed: int) -> str:
    """Text that does not compress (random letters), like a big embedded certificate bundle."""
    chooser = random.Random(seed)
    return "".join(chooser.choice(string.ascii_letters) for _ in range(size))


def snapshot(workload_bytes: int, replicasets: int, rs_bytes: int) -> Snapshot:
    workload: dict[str, Any] = {
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"blob": noise(workload_bytes, 0)}},
        "spec": {"replicas": 2},
    }
    history = [
        {"kind": "ReplicaSet", "metadata": {"name": f"web-{i}", "annotations": {"blob": noise(rs_bytes, i + 1)}}}
        for i in range(replicasets)
    ]
    return Snapshot(
        id="s", taken_at=datetime(2026, 1, 1, tzinfo=UTC), target=REF, workload=workload, replicasets=history
    )


def test_a_big_but_compressible_snapshot_is_kept_whole() -> None:
    big = snapshot(0, 3, 0)
    big.workload["metadata"]["annotations"]["blob"] = "x" * 3_000_000  # 3 MB of the same letter
    text, packed, trimmed = SnapshotStore._fit(big)
    assert trimmed == 0 and len(packed) < MAX_STORED_BYTES
    assert gzip.decompress(base64.b64decode(packed)).decode() == text


def test_the_oldest_revisions_are_left_out_first_and_the_workload_never() -> None:
    text, packed, trimmed = SnapshotStore._fit(snapshot(100_000, 6, 200_000))
    kept = Snapshot.model_validate_json(text)
    assert trimmed >= 1 and len(packed) <= MAX_STORED_BYTES
    assert [rs["metadata"]["name"] for rs in kept.replicasets] == [f"web-{i}" for i in range(trimmed, 6)]
    assert kept.workload["metadata"]["name"] == "web"


def test_a_workload_too_big_for_one_object_is_refused_with_a_clear_reason() -> None:
    with pytest.raises(SnapshotTooLarge, match="more than one object holds; AMOS cannot take a snapshot"):
        SnapshotStore._fit(snapshot(1_200_000, 2, 10))


def test_the_last_applied_copy_of_the_spec_is_not_kept() -> None:
    obj = {
        "metadata": {
            "name": "web",
            "annotations": {LAST_APPLIED_ANNOTATION: '{"env": "DB_PASSWORD=x"}', "team": "shop"},
        }
    }
    assert without_last_applied(obj)["metadata"]["annotations"] == {"team": "shop"}
    assert LAST_APPLIED_ANNOTATION in obj["metadata"]["annotations"]  # the live object as read is not modified
