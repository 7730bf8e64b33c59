"""The image built without an engine: the Dockerfile's own instructions replayed into folders, then run as its USER.

No Docker engine runs on this machine, so the Dockerfile is replayed on the machine's Python 3.11: each stage
gets a root folder, RUN lines run there with the image's absolute paths mapped into it (the dependency stage
installs requirements.lock with hashes required and wheels only), COPY lays out /app, the final stage's smoke
test runs, and the result, started as the image's numeric user with only the image's environment and nothing
of the repository on its path, answers `--version` and diagnoses a real fault on the lab. What this cannot
show is the base image itself (its Debian and CPython patch release).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from lab.cluster import LabCluster
from lab.workloads import create, deployment, pods_of, wait_for, waiting_reasons
from service.exitcodes import ExitCode

REPO = Path(__file__).resolve().parent.parent
# Absolute paths of the image that the replay maps into a stage's root folder.
IMAGE_PATH = re.compile(r"(?<![\w./-])/(?=(?:opt|app|tmp)(?:[/\s:\"']|$))")


@dataclass
class Stage:
    root: Path
    env: dict[str, str]
    workdir: str = "/"
    user: tuple[int, int] | None = None
    entrypoint: list[str] = field(default_factory=list)

    def path(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def mapped(self, text: str) -> str:
        return IMAGE_PATH.sub(f"{self.root}/", text)

    def run(self, argv: list[str], *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        as_user = self.user if self.user is not None and os.geteuid() == 0 else None
        return subprocess.run(
            argv,
            cwd=self.path(self.workdir),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=as_user[0] if as_user else None,
            group=as_user[1] if as_user else None,
            extra_groups=[] if as_user else None,
        )


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            yield word.upper(), rest.strip()


def _replay(dockerfile: str, into: Path, python_bin: Path) -> Stage:
    """Run the Dockerfile's stages; returns the last one. Raises AssertionError naming a RUN that fails."""
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    stage: Stage | None = None
    for word, rest in _instructions(dockerfile):
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            base, _, alias = rest.partition(" AS ")
            assert re.fullmatch(r"\$\{\w+\}|python:3\.11[\w.@:-]*", base.strip()), base
            root = into / f"stage{len(stages)}"
            (root / "tmp").mkdir(parents=True)
            (root / "tmp").chmod(0o1777)
            # LD_LIBRARY_PATH: a shared-library CPython finds its libpython in the copy, not where it was built
            stage = Stage(
                root, {"PATH": f"{python_bin}:/usr/bin:/bin", "LD_LIBRARY_PATH": str(python_bin.parent / "lib")}
            )
            stages[alias.strip() or str(len(stages))] = stage
        elif stage is None:
            raise AssertionError(f"{word} before FROM")
        elif word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                stage.env[name] = stage.mapped(value).replace("$PATH", stage.env["PATH"])
        elif word == "WORKDIR":
            stage.workdir = rest
            stage.path(rest).mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            parts = rest.split()
            source_root = REPO
            if parts[0].startswith("--from="):
                source_root = stages[parts.pop(0).removeprefix("--from=")].root
            *sources, target = parts
            for source in sources:  # like Docker: a folder's contents go into the target
                origin = source_root / source.lstrip("/")
                destination = stage.path(target if target.startswith("/") else f"{stage.workdir}/{target}")
                if origin.is_dir():
                    shutil.copytree(origin, destination, symlinks=True, dirs_exist_ok=True)
                elif target.endswith("/"):
                    destination.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, destination / origin.name)
                else:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, destination)
        elif word == "RUN":
            result = stage.run(["sh", "-c", stage.mapped(rest)])
            assert result.returncode == 0, f"RUN {rest}\n{result.stdout}\n{result.stderr}"
        elif word == "USER":
            uid, _, gid = rest.partition(":")
            stage.user = (int(uid), int(gid or uid))
        elif word == "ENTRYPOINT":
            stage.entrypoint = json.loads(rest)
        elif word not in ("EXPOSE", "CMD", "LABEL"):
            raise AssertionError(f"the replay does not know the instruction {word}")
    assert stage is not None and args.get("PYTHON_IMAGE", "").startswith("python:3.11")
    return stage


def _self_contained_kubeconfig(lab: LabCluster, into: Path) -> Path:
    """The lab's kubeconfig with its certificate files inlined (the image's user cannot read the lab's folder)."""
    document = yaml.safe_load(lab.kubeconfig.read_text())
    for entry, keys in (("clusters", ("certificate-authority",)), ("users", ("client-certificate", "client-key"))):
        for item in document[entry]:
            section = item["cluster" if entry == "clusters" else "user"]
            for key in keys:
                section[f"{key}-data"] = base64.b64encode(Path(section.pop(key)).read_bytes()).decode()
    path = into / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    path.chmod(0o644)
    return path


def _base_python(into: Path) -> Path:
    """A copy of this machine's CPython 3.11 without its site-packages: the base image's `python`, readable by
    the image's user (the original may sit in a folder only root can enter). Returns its bin folder."""
    base = Path(sys.base_prefix)
    copy = into / "base"
    skipped = shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "__pycache__")
    shutil.copytree(base / "lib", copy / "lib", symlinks=True, ignore=skipped)
    (copy / "bin").mkdir()
    interpreter = Path(os.path.realpath(sys._base_executable))  # type: ignore[attr-defined]
    shutil.copy2(interpreter, copy / "bin" / "python")
    return copy / "bin"


@pytest.fixture(scope="module")
def image() -> Iterator[Stage]:
    into = Path(tempfile.mkdtemp(prefix="amos-image-"))
    into.chmod(0o755)
    try:
        yield _replay((REPO / "Dockerfile").read_text(), into, _base_python(into))
    finally:
        shutil.rmtree(into, ignore_errors=True)


def test_the_replayed_image_answers_version_as_its_user(image: Stage) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = image.run([*image.entrypoint, "--version"])
    assert result.returncode == 0, result.stderr
    assert version in result.stdout
    assert image.user is not None and image.user[0] != 0
    assert str(REPO) not in image.run([*image.entrypoint[:1], "-c", "import sys; print(sys.path)"]).stdout


@pytest.mark.lab
def test_the_replayed_image_diagnoses_a_fault_on_the_lab(
    image: Stage, lab: LabCluster, api_client: client.ApiClient, namespace: str
) -> None:
    create(api_client, namespace, deployment("api", image="shop/api:1.0-missing"))
    wait_for(
        lambda: any(
            waiting_reasons(p) & {"ErrImagePull", "ImagePullBackOff"} for p in pods_of(api_client, namespace, "app=api")
        ),
        what="api failing",
    )
    kubeconfig = _self_contained_kubeconfig(lab, image.path("/tmp"))
    image.env["KUBECONFIG"] = str(kubeconfig)
    result = image.run([*image.entrypoint, "diagnose", "deploy/api", "-n", namespace, "-o", "json"])
    assert result.returncode == ExitCode.FAULT, result.stderr
    report = json.loads(result.stdout)
    assert report["incidents"][0]["diagnosis"]["category"] == "bad_image"
