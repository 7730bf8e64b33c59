"""The mail of each outcome, parsed back strictly: subject, first screen, truthful attempts, valid self-contained HTML."""

from __future__ import annotations

import re
from datetime import timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import strict
from html.parser import HTMLParser
from typing import Any, ClassVar
from xml.etree import ElementTree

import pytest

from core.config import Settings
from core.models import Evidence, FaultKind, ObjectRef
from core.report import (
    CLUSTER_WIDE,
    ActionRecord,
    ActionStatus,
    FailingWorkload,
    IncidentReport,
    NamespaceOutage,
    Outcome,
    Severity,
)
from notifications import Mailer, RenderedMessage, render_report
from tests.test_notifications import DIFF, NOW, WEB, make_report

CLUSTER = "prod-eu"
UID = "3f2b8c1e-9d4a-4b7e-a1c2-0e5f6a7b8c9d"
SECOND_DIFF = "--- before\n+++ after\n-memory: 128Mi\n+memory: 192Mi"


def applied(summary: str, diff: str = DIFF, target: ObjectRef = WEB) -> ActionRecord:
    return ActionRecord(verb="patch", target=target, summary=summary, status=ActionStatus.APPLIED, diff=diff)


def restored(target: ObjectRef = WEB) -> ActionRecord:
    return ActionRecord(
        verb="restore", target=target, summary="restore from snapshot s-1", status=ActionStatus.APPLIED, diff=""
    )


def fixed() -> IncidentReport:
    return make_report(Outcome.FIXED, revision_before=3)


def escalated_after_two_attempts() -> IncidentReport:
    return make_report(
        Outcome.ESCALATED,
        attempt=2,
        actions=[
            applied("raise memory limit to 256Mi"),
            restored(),
            applied("raise memory limit to 192Mi", SECOND_DIFF),
            restored(),
        ],
        verification="attempt 1: pods still OOMKilled after 60s\nattempt 2: pods still OOMKilled after 60s",
        rolled_back=True,
        escalation_reason="the fix did not help in 2 attempt(s); each change was rolled back",
        human_steps=["Profile the memory use of app", "Raise the limit in the chart values"],
    )


def outage() -> IncidentReport:
    failing = [
        FailingWorkload(
            workload=ObjectRef(kind="Deployment", namespace="shop", name=f"svc-{index:02d}"),
            kind=FaultKind.CONTAINER_CONFIG,
            diagnosis=f"ConfigMap shop-config-{index:02d} is missing",
            category="missing_config",
        )
        for index in range(12)
    ]
    return make_report(
        Outcome.ESCALATED,
        actions=[],
        verification="",
        root_cause="",
        escalation_reason="namespace shop looks like an outage: 12 of 14 workloads are failing",
        outage=NamespaceOutage(namespace="shop", total_workloads=14, failing=failing),
    )


def approval_needed() -> IncidentReport:
    proposal = ActionRecord(
        verb="patch",
        target=WEB,
        summary="raise memory limit to 256Mi",
        status=ActionStatus.PROPOSED,
        reason="outside what the workload ran before",
        diff=DIFF,
    )
    return make_report(Outcome.APPROVAL_NEEDED, actions=[proposal], verification="", proposal_id="p-7f3a")


def recommended() -> IncidentReport:
    dry_run = ActionRecord(
        verb="patch", target=WEB, summary="raise memory limit to 256Mi", status=ActionStatus.DRY_RUN, diff=DIFF
    )
    return make_report(
        Outcome.RECOMMENDED, actions=[dry_run], verification="", escalation_reason="AMOS only recommends here"
    )


OUTCOMES = {
    "fixed": fixed,
    "escalated after two attempts": escalated_after_two_attempts,
    "outage": outage,
    "approval needed": approval_needed,
    "recommended": recommended,
}


def mailer() -> Mailer:
    return Mailer(
        Settings(smtp_host="127.0.0.1", engineer_email="oncall@example.com", from_email="amos@example.com"),
        cluster=CLUSTER,
    )


def parsed(rendered: RenderedMessage) -> tuple[bytes, EmailMessage]:
    raw = mailer().build_message(rendered, "d41d8cd98f00b204e980").as_bytes()
    message = BytesParser(policy=strict).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return raw, message


def first_screen(text: str) -> str:
    return text.split("\nROOT CAUSE\n")[0]


class _Balance(HTMLParser):
    """Every tag closed in order, and a record of anything that would fetch from elsewhere."""

    VOID: ClassVar[set[str]] = {"meta", "br", "hr", "img", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._look(tag, attrs)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._look(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def _look(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("img", "link", "script", "style", "iframe", "object"):
            self.external.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "background") or "url(" in (value or "") or "http" in (value or ""):
                self.external.append(f"{tag}[{name}={value}]")


def check_html(html: str) -> None:
    ElementTree.fromstring(html)  # well-formed XML, so well-formed HTML
    balance = _Balance()
    balance.feed(html)
    balance.close()
    assert balance.errors == [] and balance.stack == []
    assert balance.external == []
    assert "<style" not in html and "class=" not in html  # inline styles only: mail clients drop style sheets


@pytest.mark.parametrize("build", list(OUTCOMES.values()), ids=list(OUTCOMES))
def test_each_outcome_parses_strictly_with_an_unfolded_subject_and_a_valid_self_contained_html_body(
    build: Any,
) -> None:
    report = build()
    rendered = render_report(report, cluster=CLUSTER)

    raw, message = parsed(rendered)

    assert message["Subject"] == rendered.subject
    assert rendered.subject.startswith(f"[AMOS][{CLUSTER}] ")
    subject_line = next(line for line in raw.split(b"\r\n") if line.startswith(b"Subject:"))
    assert subject_line == b"Subject: " + rendered.subject.encode()  # one line, no fold
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    assert text.get_content().replace("\r\n", "\n") == rendered.text
    check_html(html.get_content())
    screen = first_screen(rendered.text)
    for heading in ("WHAT AMOS DID", "WHAT YOU MUST DO NOW", "Inspect:", "kubectl -n shop "):
        assert heading in screen
    assert html.get_content().index("What you must do now") < html.get_content().index("Root cause")


def test_subjects_name_cluster_outcome_reason_and_workload_and_carry_a_severity() -> None:
    subjects = {name: render_report(build(), cluster=CLUSTER).subject for name, build in OUTCOMES.items()}

    assert subjects["fixed"] == "[AMOS][prod-eu] FIXED: OOMKilled on Deployment/web -n shop"
    assert subjects["escalated after two attempts"] == "[AMOS][prod-eu] ESCALATED: OOMKilled on Deployment/web -n shop"
    assert subjects["approval needed"] == "[AMOS][prod-eu] APPROVAL NEEDED: OOMKilled on Deployment/web -n shop"
    assert subjects["recommended"] == "[AMOS][prod-eu] RECOMMENDED: OOMKilled on Deployment/web -n shop"
    assert subjects["outage"] == "[AMOS][prod-eu] OUTAGE: 12 of 14 workloads failing on namespace shop"
    severities = {name: build().severity for name, build in OUTCOMES.items()}
    assert severities["escalated after two attempts"] == severities["approval needed"] == Severity.ACTION_REQUIRED
    assert severities["outage"] == Severity.ACTION_REQUIRED
    assert severities["escalated after two attempts"] > severities["fixed"] > severities["recommended"]
    _, escalation = parsed(render_report(escalated_after_two_attempts(), cluster=CLUSTER))
    _, recommendation = parsed(render_report(recommended(), cluster=CLUSTER))
    assert escalation["X-Priority"].startswith("1") and escalation["Importance"] == "high"
    assert recommendation["X-Priority"].startswith("5") and recommendation["Importance"] == "low"


def test_a_long_subject_is_never_folded() -> None:
    long_name = "payments-gateway-" * 6 + "frontend"
    workload = WEB.model_copy(update={"name": long_name, "namespace": "shop-prod-eu-west"})
    report = make_report(incident=make_report().incident.model_copy(update={"workload": workload}))
    rendered = render_report(report, cluster=CLUSTER)

    raw, message = parsed(rendered)

    assert len(rendered.subject) > 78  # longer than the line length a default policy folds at
    assert message["Subject"] == rendered.subject
    headers = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    at = next(index for index, line in enumerate(headers) if line.startswith(b"Subject:"))
    assert headers[at] == b"Subject: " + rendered.subject.encode()
    assert not headers[at + 1].startswith((b" ", b"\t"))  # no continuation line a strict parser would see


def test_a_fixed_mail_says_what_to_undo_with_the_revision_before_amos_changed_it() -> None:
    text = render_report(fixed(), cluster=CLUSTER).text
    screen = first_screen(text)

    assert screen.startswith("FIXED: AMOS fixed this incident")
    assert "Attempt 1: patch Deployment/web: raise memory limit to 256Mi; verified: 3/3 pods ready" in screen
    assert "kubectl -n shop rollout undo deploy/web --to-revision=3" in screen
    assert "kubectl -n shop describe deploy/web" in screen


@pytest.mark.parametrize(("kind", "short"), [("StatefulSet", "sts"), ("DaemonSet", "ds"), ("Deployment", "deploy")])
def test_the_undo_command_uses_the_workload_kind(kind: str, short: str) -> None:
    ref = ObjectRef(kind=kind, namespace="data", name="db")
    incident = make_report().incident.model_copy(update={"workload": ref})
    report = make_report(incident=incident, actions=[applied("raise memory limit", target=ref)], revision_before=7)

    text = render_report(report).text

    assert f"kubectl -n data rollout undo {short}/db --to-revision=7" in text
    assert f"kubectl -n data rollout history {short}/db" in text


def test_two_rolled_back_attempts_are_never_presented_as_live_and_are_collapsed_per_attempt() -> None:
    rendered = render_report(escalated_after_two_attempts(), cluster=CLUSTER)
    screen = first_screen(rendered.text)

    did = [line for line in screen.splitlines() if line.startswith("- Attempt")]
    assert len(did) == 2
    assert all("no longer live" in line for line in did)
    assert "rollout undo" not in rendered.text  # nothing of AMOS's is live, so there is nothing to undo
    assert "Why a person is needed: the fix did not help in 2 attempt(s)" in screen
    assert "1. Profile the memory use of app" in screen
    assert "Attempt:     2 of 2" in rendered.text
    assert "ATTEMPT 1: ROLLED BACK" in rendered.text and "ATTEMPT 2: ROLLED BACK" in rendered.text
    assert rendered.text.index("ATTEMPT 1") > rendered.text.index("ROOT CAUSE")  # details after the first screen
    assert "Verification: pods still OOMKilled after 60s" in rendered.text
    assert rendered.html.count("<details") == 2
    assert rendered.html.index("<details") > rendered.html.index("Root cause")
    assert "+memory: 192Mi" in rendered.html.split("<details")[2]  # each diff under its own attempt


def test_a_pure_escalation_shows_no_attempt_and_says_nothing_changed() -> None:
    report = make_report(Outcome.ESCALATED, actions=[], verification="", escalation_reason="no safe fix for this")

    rendered = render_report(report)

    assert "Attempt:" not in rendered.text and ">Attempt<" not in rendered.html
    assert "AMOS changed nothing in the cluster." in first_screen(rendered.text)
    assert "<details" not in rendered.html


def test_evidence_is_deduplicated_with_pod_uids_trimmed_and_one_time_when_seen_once() -> None:
    incident = make_report().incident.model_copy(
        update={
            "evidence": [
                Evidence(
                    reason="BackOff", message=f"back-off restarting failed container app in pod web-1_shop({UID})"
                ),
                Evidence(reason="BackOff", message="back-off restarting failed container app in pod web-1_shop"),
            ],
            "last_seen": NOW,
        }
    )
    report = make_report(incident=incident, evidence=["working set 190Mi", "working set 190Mi", " working  set 190Mi"])

    text = render_report(report).text

    assert UID not in text and UID[:8] not in text
    assert text.count("back-off restarting failed container app in pod web-1_shop") == 1
    assert text.count("working set 190Mi") == 1
    assert re.search(r"^Seen: +2025-01-01 12:00:00\+00:00$", text, re.MULTILINE)
    later = make_report(incident=incident.model_copy(update={"last_seen": NOW + timedelta(minutes=5)}))
    assert "Seen:        2025-01-01 12:00:00+00:00 to 2025-01-01 12:05:00+00:00" in render_report(later).text


def test_an_outage_mail_lists_every_failing_workload_with_its_diagnosis() -> None:
    rendered = render_report(outage(), cluster=CLUSTER)

    assert "FAILING WORKLOADS (12 of 14)" in rendered.text
    for index in range(12):
        line = (
            f"- Deployment/svc-{index:02d} [CreateContainerConfigError]: ConfigMap shop-config-{index:02d} is missing"
        )
        assert line in rendered.text
        assert f"ConfigMap shop-config-{index:02d} is missing" in rendered.html
    assert "OUTAGE: 12 of 14 workloads in namespace shop are failing" in rendered.text
    assert "kubectl -n shop get events --sort-by=.lastTimestamp" in first_screen(rendered.text)


def test_an_approval_mail_puts_the_diff_and_the_approve_command_on_the_first_screen() -> None:
    rendered = render_report(approval_needed(), cluster=CLUSTER)
    screen = first_screen(rendered.text)

    assert "APPROVAL NEEDED: AMOS proposes a change and applies nothing" in screen
    assert "kubectl -n shop annotate deploy/web amos.io/approve=p-7f3a" in screen
    assert "python main.py reject p-7f3a" in screen
    assert "PROPOSED CHANGE" in screen and "+memory: 256Mi" in screen
    assert "Proposed, not applied: raise memory limit to 256Mi." in screen
    assert "AMOS changed nothing in the cluster." in screen
    assert "rollout undo" not in rendered.text
    assert "Attempt:" not in rendered.text


def test_a_storm_across_namespaces_names_each_workload_with_its_namespace_and_inspects_the_whole_cluster() -> None:
    failing = [
        FailingWorkload(workload=ObjectRef(kind="Deployment", namespace=f"team-{index}", name="api"), diagnosis="x")
        for index in range(3)
    ]
    report = outage().model_copy(
        update={"outage": NamespaceOutage(namespace=CLUSTER_WIDE, total_workloads=3, failing=failing)}
    )

    rendered = render_report(report, cluster=CLUSTER)

    assert rendered.subject == "[AMOS][prod-eu] OUTAGE: 3 of 3 workloads failing on the cluster"
    assert "- Deployment/api -n team-2: x" in rendered.text
    assert "kubectl -A get events --sort-by=.lastTimestamp" in first_screen(rendered.text)
    assert "-n (cluster-wide)" not in rendered.text
    check_html(rendered.html)
