"""The `amos` app for `adk web agents`: the production agent graph (see agents/app.py)."""

import sys
from pathlib import Path

# `adk web agents` puts agents/ on sys.path, not the repository root the graph imports from.
_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from . import agent
from .agent import root_agent

__all__ = ["agent", "root_agent"]
