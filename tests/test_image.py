"""The image's inputs: the lock pins what pyproject asks for, and the Dockerfile copies what `run` imports, no more.

No Docker engine runs these tests; they keep the Dockerfile and requirements.lock honest against the code.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
LOCK = (ROOT / "requirements.lock").read_text()
REPOSITORY_ONLY = {"lab", "tests", "scenarios", "benchmarks"}  # never in the image


def _locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n\s+--hash=sha256:[0-9a-f]{64}$", LOCK, re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def _copied() -> set[str]:
    """Top-level folders and files the final stage copies from the build context."""
    final = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    return {
        source.rstrip("/")
        for line in re.findall(r"^COPY (?!--from)(.+)$", final, re.MULTILINE)
        for source in line.split()[:-1]
    }


def _local_imports(path: Path) -> set[str]:
    local = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()} | {p.stem for p in ROOT.glob("*.py")}
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & local


def test_the_lock_pins_every_dependency_of_pyproject_with_a_hash() -> None:
    locked = _locked()
    assert len(locked) == LOCK.count("==")  # every entry has exactly one sha256
    for text in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        requirement = Requirement(text)
        version = locked.get(canonicalize_name(requirement.name))
        assert version is not None and requirement.specifier.contains(version), (text, version)


def test_the_image_installs_only_from_the_lock_on_a_pinned_base() -> None:
    assert "--require-hashes" in DOCKERFILE and "-r /tmp/requirements.lock" in DOCKERFILE
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?$", DOCKERFILE, re.MULTILINE)
    assert re.search(r"^USER \d+:\d+$", DOCKERFILE, re.MULTILINE)


def test_the_image_copies_what_the_service_imports_and_nothing_of_the_repository() -> None:
    copied = _copied()
    assert not copied & REPOSITORY_ONLY
    code = [
        ROOT / "main.py",
        *(path for folder in copied if (ROOT / folder).is_dir() for path in (ROOT / folder).rglob("*.py")),
    ]
    imported = {name for path in code for name in _local_imports(path)}
    # main.py's `demo` is the one command that needs the repository (scenarios/, lab/)
    assert imported - copied <= {"scenarios"}, imported - copied
    assert "prompts" in copied  # the agents' Jinja templates are data, not imports
