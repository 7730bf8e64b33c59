"""The pinned versions of the lab's control plane, in one place.

Kubernetes and etcd are pinned by `lab/go/go.mod` (the wrapper module that builds
them); this module reads them from there so nothing is written twice. KWOK is
installed with `go install`, so its version is pinned here, as are helm and the
prometheus-operator release whose CRDs the chart's ServiceMonitor and PrometheusRule
are checked against; Prometheus (promtool) is pinned by `lab/go/promtool/go.mod`.
The tools are pinned to releases whose go.mod accepts Go 1.24, the oldest toolchain
setup.sh accepts.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from pydantic import BaseModel

GO_MODULE_DIR = Path(__file__).resolve().parent / "go"
PROMTOOL_MODULE_DIR = GO_MODULE_DIR / "promtool"
KWOK_VERSION = "v0.7.0"
HELM_VERSION = "v3.19.5"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"


class LabVersions(BaseModel, frozen=True):
    kubernetes: str
    etcd: str
    kwok: str

    @property
    def cache_key(self) -> str:
        """Folder name under the cache: a new pin means a new build, never a stale binary."""
        return f"k8s-{self.kubernetes}_etcd-{self.etcd}_kwok-{self.kwok}"


def _required_version(go_mod: str, module: str, where: Path = GO_MODULE_DIR) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v[0-9][^\s]*)", go_mod, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{module} is not required in {where / 'go.mod'}")
    return match.group(1)


@cache
def lab_versions() -> LabVersions:
    go_mod = (GO_MODULE_DIR / "go.mod").read_text()
    return LabVersions(
        kubernetes=_required_version(go_mod, "k8s.io/kubernetes"),
        etcd=_required_version(go_mod, "go.etcd.io/etcd/server/v3"),
        kwok=KWOK_VERSION,
    )


class ToolVersions(BaseModel, frozen=True):
    """The chart tools, kept apart from LabVersions so a new tool pin never rebuilds the control plane."""

    helm: str
    prometheus: str  # the Go module's version: v0.<major><minor>.<patch>, v0.308.1 is Prometheus 3.8.1
    prometheus_operator: str

    @property
    def prometheus_release(self) -> str:
        """The Prometheus release a module version stands for (v0.308.1 -> 3.8.1)."""
        minor_part, patch = self.prometheus.lstrip("v").split(".")[1:3]
        return f"{int(minor_part) // 100}.{int(minor_part) % 100}.{patch}"

    @property
    def stamp_name(self) -> str:
        return f".tools-helm-{self.helm}_prometheus-{self.prometheus}_operator-{self.prometheus_operator}.complete"


@cache
def tool_versions() -> ToolVersions:
    go_mod = (PROMTOOL_MODULE_DIR / "go.mod").read_text()
    return ToolVersions(
        helm=HELM_VERSION,
        prometheus=_required_version(go_mod, "github.com/prometheus/prometheus", PROMTOOL_MODULE_DIR),
        prometheus_operator=PROMETHEUS_OPERATOR_VERSION,
    )
