"""The orchestrator: the safety loop around every remediation.

For each incident it applies the guard rails, takes a durable snapshot, journals each step in the
cluster, runs one agent session, verifies strictly, restores the snapshot when the fix did not help,
and hands one report to the outbox. State lives in the cluster (`store`), so a restart (even
`kill -9`) finishes or rolls back what was in flight by resuming the same steps (`recovery`).

    dispatch      which incident runs when (per-workload exclusion, concurrency, deferral, periodic tasks)
    incident      one incident: guard rails -> proposal or attempts -> conclusion -> report
    steps         one attempt as journaled steps (begin, apply, verify, restore); the runner `drive`
    attempt       what an attempt did, as data
    outcome       how an incident ends (pure)
    recovery      resuming journal entries, claimed by leader term
    fencing       leadership, generation and repeated-change fences around every write
    reports       report building, Events, hand-off to the outbox
    orchestrator  the assembled service object; wiring lives in `service.wiring`
    store, guardrails, verify, restore, events, knowngood: durable state and the rules they serve
"""
