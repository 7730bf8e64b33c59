"""The pinned versions of the lab's control plane, in one place.

Kubernetes and etcd are pinned by `lab/go/go.mod` (the wrapper module that builds
them); this module reads them from there so nothing is written twice. KWOK is
installed with `go install`, so its version is pinned here.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pydantic import BaseModel

GO_MODULE_DIR = Path(__file__).resolve().parent / "go"
KWOK_VERSION = "v0.7.0"


class LabVersions(BaseModel, frozen=True):
    kubernetes: str
    etcd: str
    kwok: str

    @property
    def cache_key(self) -> str:
        """Folder name under the cache: a new pin means a new build, never a stale binary."""
        return f"k8s-{self.kubernetes}_etcd-{self.etcd}_kwok-{self.kwok}"


def _required_version(go_mod: str, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v[0-9][^\s]*)", go_mod, re.M)
    if match is None:
        raise RuntimeError(f"{module} is not required in {GO_MODULE_DIR / 'go.mod'}")
    return match.group(1)


@cache
def lab_versions() -> LabVersions:
    go_mod = (GO_MODULE_DIR / "go.mod").read_text()
    return LabVersions(
        kubernetes=_required_version(go_mod, "k8s.io/kubernetes"),
        etcd=_required_version(go_mod, "go.etcd.io/etcd/server/v3"),
        kwok=KWOK_VERSION,
    )
