"""Typed Kubernetes tools for AMOS: bounded, redacted reads and policy-guarded writes.

Agents call these (as ADK function tools or directly); every call returns a
`ToolResult` and never raises. Writes pass `policy.PolicyGuard` first.
"""
