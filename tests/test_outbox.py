"""Pure pieces of the outbox: back-off, delivery ids, and reports cut to fit a ConfigMap."""

from __future__ import annotations

import re

from core.report import ActionRecord, ActionStatus
from notifications.outbox import MAX_ENTRY_BYTES, OutboxPolicy, delivery_id, fit_for_storage
from tests.test_notifications import WEB, make_report


def test_back_off_doubles_from_the_initial_wait_up_to_the_cap() -> None:
    policy = OutboxPolicy(initial_backoff_seconds=5, max_backoff_seconds=60)

    assert [policy.backoff(attempt) for attempt in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_the_production_policy_retries_for_a_day_and_keeps_records_for_a_day() -> None:
    policy = OutboxPolicy()

    assert policy.deadline_seconds == policy.retention_seconds == 86_400
    assert policy.claim_seconds > 3 * 60  # longer than an SMTP send with its connect, TLS and DATA timeouts


def test_a_delivery_id_is_stable_and_safe_for_object_names_headers_and_message_ids() -> None:
    key = "fingerprint|2026-01-01T00:00:00+00:00|1|fixed <weird> @ key"

    assert delivery_id(key) == delivery_id(key) != delivery_id(key + "x")
    assert re.fullmatch(r"[0-9a-f]{40}", delivery_id(key))


def test_a_report_too_big_for_a_configmap_is_cut_to_fit_diffs_first() -> None:
    huge = "+" + "x" * 2_000_000
    report = make_report(
        actions=[ActionRecord(verb="patch", target=WEB, summary="s", status=ActionStatus.APPLIED, diff=huge)]
    )

    fitted = fit_for_storage(report)

    assert len(fitted.model_dump_json()) <= MAX_ENTRY_BYTES
    assert fitted.actions[0].diff.endswith("(diff cut: too long for a report)")
    assert fitted.root_cause == report.root_cause and report.actions[0].diff == huge
    small = make_report()
    assert fit_for_storage(small) is small
