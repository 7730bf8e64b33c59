"""Monitors: watch the cluster, recognise failure patterns, and group them into incidents.

Plain Python, no model: `trim` shrinks API objects, `patterns` turns a trimmed
object into typed faults, `detector` groups faults into incidents, and `watch`
feeds it all from the Kubernetes API.
"""
