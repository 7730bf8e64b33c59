"""`root_agent` for `adk web agents`: built from settings (config.yaml / environment).

No cluster is contacted at import; the offline model is used when no model key is set.
Diagnose-only unless `AMOS_ADK_WEB_WRITES=true` (`Settings.adk_web_writes`), and even then
a fix, or a decision on a proposal, is handed to the orchestrator's whole safety loop
(`service.adk_fixes`), never applied here. Pending proposals are listed in either case.
"""

import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from agents.app import build_root_agent
from core.config import load_settings
from service.adk_fixes import OrchestratorFixes, OrchestratorProposals

_settings = load_settings()
fixes = OrchestratorFixes(_settings)
root_agent = build_root_agent(_settings, submit_fix=fixes, proposals=OrchestratorProposals(fixes))
