"""The orchestrator: the safety loop around every remediation.

For each incident it applies the guard rails, takes a durable snapshot, journals each step in the
cluster, runs one agent session, verifies strictly, restores the snapshot when the fix did not help,
and hands one report to the outbox. State lives in the cluster (`store`), so a restart (even
`kill -9`) finishes or rolls back what was in flight by resuming the same steps (`recovery`).

    dispatch      which incident runs when (per-workload exclusion, concurrency, deferral, periodic tasks)
    incident      one incident: guard rails -> proposal or attempts -> conclusion -> report
    steps         one attempt as a table of journaled steps, phase -> step; `begin` and the runner `drive`
    applying, verifying, rolling_back   one step each: the agent session, the judge, the restore
    durable       the leader-checked, retried state writes every step goes through (journal first)
    attempt_run, attempt, outcome       what the steps share, what an attempt did, how an incident ends (pure)
    recovery      resuming journal entries through the same table, claimed by leader term
    fencing       leadership, generation and repeated-change fences around every write
    reports       report building, Events, hand-off to the outbox
    proposing, proposals, approvals, modes   approve mode
    guardrails    the IncidentGate; pure rules in guard_rules and outage, workload health in workload_listing
    verify        the Judge; pure readings in assessment and rollout
    store, configmap_records, records, integrity, state_api   durable state (signed ConfigMaps and Secrets)
    knowngood, knowngood_store, knowngood_records, snapshots, restore, breaker, events
    orchestrator  the assembled service object; wiring lives in `service.wiring`
"""
