"""Known-good selection without a cluster: recorded marks first, inference second, never a known-bad revision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.models import ObjectRef
from orchestrator.knowngood import (
    MAX_MARKS,
    MAX_TEMPLATES,
    KnownGoodRecord,
    Mark,
    Revision,
    Source,
    classify,
    select_job_template,
    select_target,
)

REF = ObjectRef(kind="Deployment", namespace="shop", name="web")
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def record(*marks: tuple[str, Mark]) -> KnownGoodRecord:
    result = KnownGoodRecord(workload=REF)
    for index, (digest, mark) in enumerate(marks):
        result.note(digest, None, mark, T0 + timedelta(minutes=index))
    return result


def history(*entries: tuple[str, int], current: int | None = None) -> list[Revision]:
    """(digest, ready pods) per revision 1..n; the last one is current unless `current` says otherwise."""
    current = current or len(entries)
    return [
        Revision(number=number, digest=digest, ready=ready, current=number == current)
        for number, (digest, ready) in enumerate(entries, start=1)
    ]


def test_good_then_crash_then_bad_image_picks_the_first_revision_when_recorded() -> None:
    revisions = history(("good", 0), ("crash", 0), ("badimage", 0))
    choice = select_target(revisions, record(("good", Mark.GOOD), ("crash", Mark.BAD)))
    assert (choice.target, choice.source) == (1, Source.RECORDED)
    assert "seen healthy" in choice.reason


def test_good_then_crash_then_bad_image_without_records_follows_the_ready_replicaset() -> None:
    # the crashing revision never became Ready, so the rolling update kept revision 1's pods serving
    revisions = history(("good", 1), ("crash", 0), ("badimage", 0))
    choice = select_target(revisions, KnownGoodRecord(workload=REF))
    assert (choice.target, choice.source) == (1, Source.INFERRED)
    assert "Ready pod" in choice.reason


def test_good_then_crash_then_bad_image_with_the_crash_marked_bad() -> None:
    revisions = history(("good", 0), ("crash", 0), ("badimage", 0))
    choice = select_target(revisions, record(("crash", Mark.BAD)))
    assert (choice.target, choice.source) == (1, Source.INFERRED)
    assert "newest earlier revision not known to be bad" in choice.reason


def test_a_known_bad_revision_is_never_chosen_even_with_ready_pods() -> None:
    revisions = history(("a", 0), ("b", 2), ("c", 0))
    assert select_target(revisions, record(("b", Mark.BAD))).target == 1
    assert select_target(revisions, record(("b", Mark.BAD), ("a", Mark.BAD))).target is None


def test_the_newest_recorded_good_wins_over_an_inferred_one() -> None:
    revisions = history(("a", 0), ("b", 0), ("c", 3), ("d", 0))
    assert select_target(revisions, record(("a", Mark.GOOD), ("b", Mark.GOOD))).target == 2


def test_no_target_without_an_earlier_revision_or_when_all_are_bad() -> None:
    only = history(("a", 0))
    choice = select_target(only, KnownGoodRecord(workload=REF))
    assert choice.target is None and "no earlier revision" in choice.reason
    both = history(("a", 0), ("b", 0))
    choice = select_target(both, record(("a", Mark.BAD)))
    assert choice.target is None and "seen failing" in choice.reason


def test_the_current_template_is_never_the_target() -> None:
    # after a rollback the same template can appear under the current digest only once, but a stale
    # entry with the current digest (a number seen before the rollback) is skipped as well
    revisions = [
        Revision(number=1, digest="a", ready=1),
        Revision(number=3, digest="a", ready=1, current=True),
    ]
    assert select_target(revisions, record(("a", Mark.GOOD))).target is None


def test_the_latest_mark_of_a_revision_wins() -> None:
    revisions = history(("a", 0), ("b", 0))
    seen_bad_then_good = record(("a", Mark.BAD), ("a", Mark.GOOD))
    assert select_target(revisions, seen_bad_then_good).target == 1
    assert len(seen_bad_then_good.marks) == 1


def test_marks_are_bounded() -> None:
    many = KnownGoodRecord(workload=REF)
    for index in range(MAX_MARKS + 7):
        many.note(f"d{index}", index, Mark.GOOD, T0)
    assert len(many.marks) == MAX_MARKS and many.marks[-1].digest == f"d{MAX_MARKS + 6}"


def test_classify_shows_recorded_inferred_bad_and_current() -> None:
    revisions = history(("a", 0), ("b", 1), ("c", 0))
    states = classify(revisions, record(("a", Mark.GOOD), ("c", Mark.BAD)))
    assert states[1].known_good is Source.RECORDED
    assert states[2].known_good is None  # not the target: a recorded one exists
    assert states[3].known_bad and states[3].current
    inferred = classify(revisions, KnownGoodRecord(workload=REF))
    assert inferred[2].known_good is Source.INFERRED and inferred[1].known_good is None


def test_cronjob_target_is_the_last_successful_template_unless_it_is_current() -> None:
    cron = KnownGoodRecord(workload=ObjectRef(kind="CronJob", namespace="shop", name="nightly"))
    assert select_job_template("x", cron).target is None
    cron.add_template("t1", {"spec": {}}, "nightly-1", T0)
    cron.add_template("t2", {"spec": {}}, "nightly-2", T0)
    choice = select_job_template("bad", cron)
    assert (choice.target, choice.digest) == (2, "t2") and "nightly-2" in choice.reason
    assert select_job_template("t2", cron).target is None
    cron.note("t2", 2, Mark.BAD, T0)
    assert select_job_template("bad", cron).target == 1
    for index in range(MAX_TEMPLATES + 3):
        cron.add_template(f"n{index}", {"spec": {}}, f"job-{index}", T0)
    assert len(cron.templates) == MAX_TEMPLATES
    cron.add_template("n3", {"spec": {}}, "job-again", T0)
    assert [t.digest for t in cron.templates].count("n3") == 1 and cron.templates[-1].job == "job-again"
    assert list(cron.numbered_templates()) == list(range(1, MAX_TEMPLATES + 1))
