"""AMOS's own log lines: redacted with the shared rules, and a value can never forge a line of its own.

Before, a record was written as it came (`password=...` and all), and a `\\n` in a value
(a pod name, a model's answer) started what looked like a new record in the plain format.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest
from kubernetes.client.exceptions import ApiException

from core.logcontext import incident_scope
from core.redaction import REDACTED, Redactor
from service import logs

FORGED = "\n2026-12-01 12:00:00,000 INFO    amos.orchestrator [-] incident inc-9 fixed: rolled back"
RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


@pytest.fixture(params=[False, True], ids=["plain", "json"])
def json_lines(request: pytest.FixtureRequest) -> Iterator[bool]:
    yield bool(request.param)
    logging.getLogger().handlers.clear()


def written(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_a_newline_in_a_value_cannot_forge_a_record(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(json_lines=False)
    try:
        logging.getLogger("amos.test").warning("pod %s crashed", "web-1" + FORGED)
    finally:
        logging.getLogger().handlers.clear()

    (line,) = written(capsys)
    assert RECORD_START.match(line) and line.endswith(" crashed")
    assert "\\n2026-12-01 12:00:00,000 INFO" in line


@pytest.mark.parametrize("control", ["\r", "\x1b[2K\r", "\u2028", "\x85", "\x00"])
def test_other_control_characters_are_escaped_in_the_plain_format(
    capsys: pytest.CaptureFixture[str], control: str
) -> None:
    logs.configure(json_lines=False)
    try:
        logging.getLogger("amos.test").info("value %s", f"a{control}b")
    finally:
        logging.getLogger().handlers.clear()

    (line,) = written(capsys)
    assert control not in line and "a\\" in line and line.endswith("b")


def test_an_exception_with_a_forged_line_stays_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure(json_lines=False)
    try:
        try:
            raise ValueError("bad value" + FORGED)
        except ValueError:
            logging.getLogger("amos.test").exception("restore failed")
    finally:
        logging.getLogger().handlers.clear()

    lines = written(capsys)
    assert len(lines) == 1 and sum(1 for line in lines if RECORD_START.match(line)) == 1
    assert "Traceback" in lines[0] and "ValueError: bad value" in lines[0]


def test_every_record_is_redacted_with_the_shared_rules(capsys: pytest.CaptureFixture[str], json_lines: bool) -> None:
    logs.configure(json_lines=json_lines)

    log = logging.getLogger("amos.test")
    log.info("connecting to postgres://app:Sup3rS3cret@db/shop with password=%s", "hunter2-x")
    log.info("token %s", "ghp_" + "a1B2" * 9)

    lines = written(capsys)
    text = "\n".join(lines)
    assert "Sup3rS3cret" not in text and "hunter2-x" not in text and "a1B2a1B2" not in text
    assert text.count(REDACTED) == 3 and len(lines) == 2
    if json_lines:
        assert [json.loads(line)["logger"] for line in lines] == ["amos.test", "amos.test"]


def test_known_values_of_the_service_redactor_are_hidden_in_messages_and_exceptions(
    capsys: pytest.CaptureFixture[str], json_lines: bool
) -> None:
    redactor = Redactor(["smtp-Pa55word-x"])
    logs.configure(json_lines=json_lines, redactor=redactor)

    with incident_scope("inc-1"):
        try:
            raise RuntimeError("SMTP login with smtp-Pa55word-x refused")
        except RuntimeError:
            logging.getLogger("amos.mail").exception("sending failed (%s)", "smtp-Pa55word-x")

    text = "\n".join(written(capsys))
    assert "smtp-Pa55word-x" not in text and text.count(REDACTED) >= 2  # the message and the exception
    if json_lines:
        entry = json.loads(text)
        assert entry["incident"] == "inc-1" and "RuntimeError" in entry["error"]


def test_a_failed_kubernetes_call_logged_with_its_traceback_is_one_line_naming_the_call(
    capsys: pytest.CaptureFixture[str], json_lines: bool
) -> None:
    class StoreFailure(Exception):
        """A layer's own error for a failed call (StoreError, ApiCallError), raised from the client's."""

    logs.configure(json_lines=json_lines)
    logger = logging.getLogger("amos.test")
    try:
        try:
            try:
                raise ApiException(status=403, reason="Forbidden")
            except ApiException as error:
                raise StoreFailure("read_namespaced_config_map failed: 403 Forbidden") from error
        except StoreFailure:
            logger.exception("could not read the circuit breaker")
        try:
            raise KeyError("spec")
        except KeyError:
            logger.exception("could not read the circuit breaker")  # a bug keeps its traceback
    finally:
        logging.getLogger().handlers.clear()

    call, bug = written(capsys)
    assert "Traceback" not in call
    assert "could not read the circuit breaker: read_namespaced_config_map failed: 403 Forbidden" in call
    assert "Traceback" in bug and "KeyError" in bug
