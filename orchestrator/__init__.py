"""The orchestrator: the safety loop around every remediation.

For each incident it applies the guard rails, takes a durable snapshot, journals each
step in the cluster, runs one agent session, verifies strictly, restores the snapshot
when the fix did not help, and reports. State lives in ConfigMaps (see `store`), so a
restart (even `kill -9`) finishes or rolls back what was in flight (`Orchestrator.recover`).
"""

from orchestrator.loop import Orchestrator
from orchestrator.verify import Judge, Verdict, VerdictKind

__all__ = ["Judge", "Orchestrator", "Verdict", "VerdictKind"]
