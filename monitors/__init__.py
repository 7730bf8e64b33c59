"""Monitors: watch the cluster, recognise failure patterns, group them into incidents, and spot known-good revisions.

Plain Python, no model. `trim` shrinks API objects into views; `patterns` (pods,
Deployments, StatefulSets, DaemonSets, Jobs) and `cronjobs` (a CronJob's runs) turn
views into typed faults; `owners`, `revisions`, `onsets` and `failed_creates` are
the small indexes those need; `detector` groups faults into incidents; `health` and
`known_good` say when a revision is healthy and stable; `watch` feeds it all from
the Kubernetes API and is the only module that does I/O.
"""
