"""Build the lab's control-plane binaries from Go modules, once per pinned version.

The binaries land in a cache folder outside the repository keyed by version
(`$AMOS_LAB_CACHE`, default `~/.cache/amos-lab`), so a warm run reuses them and
a new pin can never pick up a stale build. A stamp file is written last: a build
cut off half-way is redone, not trusted.

The chart tools (helm, promtool) and the prometheus-operator CRDs land in the same
folder with their own stamp, so pinning a new tool version rebuilds only the tools
and the control plane is built exactly as before.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from lab.versions import GO_MODULE_DIR, PROMTOOL_MODULE_DIR, LabVersions, ToolVersions, lab_versions, tool_versions

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")
TOOLS = ("helm", "promtool")
PROMETHEUS_OPERATOR_CRDS = ("monitoring.coreos.com_servicemonitors.yaml", "monitoring.coreos.com_prometheusrules.yaml")
_STAMP = ".complete"


def cache_root() -> Path:
    return Path(os.environ.get("AMOS_LAB_CACHE", Path.home() / ".cache" / "amos-lab"))


def bin_dir(versions: LabVersions | None = None) -> Path:
    return cache_root() / (versions or lab_versions()).cache_key / "bin"


def is_built(versions: LabVersions | None = None) -> bool:
    directory = bin_dir(versions)
    return (directory / _STAMP).exists() and all((directory / name).exists() for name in BINARIES)


def crd_dir(versions: LabVersions | None = None) -> Path:
    """Where the pinned prometheus-operator CRDs (ServiceMonitor, PrometheusRule) are copied."""
    return bin_dir(versions).parent / "prometheus-operator-crds"


def tools_built(versions: LabVersions | None = None, tools: ToolVersions | None = None) -> bool:
    directory = bin_dir(versions)
    return (
        (directory / (tools or tool_versions()).stamp_name).exists()
        and all((directory / name).exists() for name in TOOLS)
        and all((crd_dir(versions) / name).exists() for name in PROMETHEUS_OPERATOR_CRDS)
    )


def _version_ldflags(kubernetes: str) -> str:
    major, minor = kubernetes.lstrip("v").split(".")[:2]
    values = {
        "k8s.io/component-base/version.gitVersion": kubernetes,
        "k8s.io/component-base/version.gitMajor": major,
        "k8s.io/component-base/version.gitMinor": minor,
        "k8s.io/component-base/version.gitTreeState": "clean",
        "k8s.io/component-base/version.buildDate": "1970-01-01T00:00:00Z",
        "k8s.io/client-go/pkg/version.gitVersion": kubernetes,
        "k8s.io/client-go/pkg/version.gitMajor": major,
        "k8s.io/client-go/pkg/version.gitMinor": minor,
    }
    return "-s -w " + " ".join(f"-X {key}={value}" for key, value in values.items())


def _run(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=cwd, env=env, check=True)


def _go_env() -> dict[str, str]:
    if shutil.which("go") is None:
        raise SystemExit("the lab needs Go to build its control plane: install Go 1.24+ and retry")
    return {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false"}


def _build_control_plane(versions: LabVersions, target: Path) -> None:
    env = _go_env()
    target.mkdir(parents=True, exist_ok=True)
    (target / _STAMP).unlink(missing_ok=True)
    started = time.monotonic()
    # One `go build` for all five binaries, so the packages they share compile once.
    _run(
        [
            "go",
            "build",
            "-trimpath",
            "-tags=selinux,notest",
            "-ldflags",
            _version_ldflags(versions.kubernetes),
            "-o",
            f"{target}/",
            "./cmd/...",
        ],
        cwd=GO_MODULE_DIR,
        env=env,
    )
    _run(
        ["go", "install", "-trimpath", "-ldflags=-s -w", f"sigs.k8s.io/kwok/cmd/kwok@{versions.kwok}"],
        env={**env, "GOBIN": str(target)},
    )
    (target / _STAMP).write_text(versions.model_dump_json())
    print(f"lab binaries: cold build took {time.monotonic() - started:.0f} s -> {target}", flush=True)


def _helm_ldflags(tools: ToolVersions, kubernetes: str) -> str:
    """What helm's Makefile sets: its version, and the Kubernetes version `helm lint`/`template` assume (the lab's)."""
    major, minor = kubernetes.lstrip("v").split(".")[:2]
    values = {
        "helm.sh/helm/v3/internal/version.version": tools.helm,
        "helm.sh/helm/v3/internal/version.gitTreeState": "clean",
        "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor": major,
        "helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor": minor,
        "helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor": major,
        "helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor": minor,
    }
    return "-s -w " + " ".join(f"-X {key}={value}" for key, value in values.items())


def _copy_prometheus_operator_crds(tools: ToolVersions, target: Path, env: dict[str, str]) -> None:
    module = f"github.com/prometheus-operator/prometheus-operator@{tools.prometheus_operator}"
    print("+ go mod download -json", module, flush=True)
    downloaded = subprocess.run(
        ["go", "mod", "download", "-json", module], env=env, check=True, capture_output=True, text=True
    )
    source = Path(json.loads(downloaded.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    target.mkdir(parents=True, exist_ok=True)
    for name in PROMETHEUS_OPERATOR_CRDS:
        shutil.copyfile(source / name, target / name)


def _build_tools(versions: LabVersions, target: Path) -> None:
    tools = tool_versions()
    env = {**_go_env(), "GOBIN": str(target)}
    target.mkdir(parents=True, exist_ok=True)
    (target / tools.stamp_name).unlink(missing_ok=True)
    started = time.monotonic()
    _run(
        [
            "go",
            "install",
            "-trimpath",
            "-ldflags",
            _helm_ldflags(tools, versions.kubernetes),
            f"helm.sh/helm/v3/cmd/helm@{tools.helm}",
        ],
        env=env,
    )
    # Prometheus's go.mod has exclude directives, which `go install pkg@version` refuses: built in its wrapper module.
    _run(
        [
            "go",
            "build",
            "-trimpath",
            "-ldflags",
            f"-s -w -X github.com/prometheus/common/version.Version={tools.prometheus_release}",
            "-o",
            f"{target}/",
            "github.com/prometheus/prometheus/cmd/promtool",
        ],
        cwd=PROMTOOL_MODULE_DIR,
        env=env,
    )
    _copy_prometheus_operator_crds(tools, crd_dir(versions), env)
    (target / tools.stamp_name).write_text(tools.model_dump_json())
    print(f"lab tools: cold build took {time.monotonic() - started:.0f} s -> {target}", flush=True)


def build(force: bool = False, *, tools: bool = False) -> Path:
    """Return the folder holding every lab binary, building what is missing; with `tools`, the chart tools too
    (setup.sh asks for them; a test session's lab fixture does not wait for a helm build it does not use)."""
    versions = lab_versions()
    target = bin_dir(versions)
    if is_built(versions) and not force:
        print(f"lab binaries: reusing {target}", flush=True)
    else:
        _build_control_plane(versions, target)
    if not tools:
        return target
    if tools_built(versions) and not force:
        print(f"lab tools: reusing {target}", flush=True)
    else:
        _build_tools(versions, target)
    return target


if __name__ == "__main__":
    build(force="--force" in sys.argv[1:], tools=True)
