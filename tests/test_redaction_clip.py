"""Redact first, clip second: a clip must never leave part of a secret behind.

The first redactor ran on clipped text: a log tail that cut the BEGIN line kept 12 of 26 lines
of a private key, and a known value straddling the 300-character event clip kept its prefix.
"""

from __future__ import annotations

import base64

import pytest

from core.redaction import ELLIPSIS, REDACTED, Redactor, clip_text

KEY_LINES = [f"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC{index:02d}BKcwggSjAgEAAoIBAQC7" for index in range(24)]
PEM = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(KEY_LINES) + "\n-----END RSA PRIVATE KEY-----"
SECRET = "Zq9kP2mW7vX4-straddling"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def key_lines_left(text: str) -> list[str]:
    return [line for line in KEY_LINES if line[:20] in text or line[-20:] in text]


def test_a_log_tail_that_cut_the_begin_line_keeps_no_key_line() -> None:
    log = "app starting\nloaded key:\n" + PEM + "\nlistening on :8080"
    tail = clip_text(log, len(log) // 2, keep="end")  # what a tool that clipped first would redact
    assert "BEGIN" not in tail and key_lines_left(tail)  # the case the old rule missed

    redacted = Redactor().redact_text(tail)

    assert key_lines_left(redacted) == []
    assert redacted.endswith("-----END RSA PRIVATE KEY-----\nlistening on :8080")


@pytest.mark.parametrize("line_end", ["\n", "\r\n"])
def test_a_pem_straddling_the_clip_is_hidden_whichever_end_is_kept(line_end: str) -> None:
    log = ("x" * 200 + line_end) * 5 + PEM.replace("\n", line_end) + line_end + ("y" * 200 + line_end) * 5
    redactor = Redactor()

    for keep in ("end", "start"):
        for limit in (len(log) // 3, len(log) // 2, 2 * len(log) // 3):
            clipped = redactor.redact_then_clip(log, limit, keep=keep)
            assert key_lines_left(clipped) == [], (keep, limit)
            assert len(clipped) <= limit


def test_redact_then_clip_keeps_a_known_value_straddling_the_limit_whole_or_not_at_all() -> None:
    redactor = Redactor()
    redactor.add_secret_data({"password": b64(SECRET)}, namespace="shop")
    shop = redactor.scope("shop")
    message = "x" * 290 + f" connecting with {SECRET} to db"

    for limit in range(296, 320):
        clipped = shop.redact_then_clip(message, limit, keep="start")
        assert SECRET[:4] not in clipped, limit
        assert len(clipped) <= limit


def test_text_a_caller_clipped_first_loses_the_cut_part_of_a_known_value_too() -> None:
    redactor = Redactor()
    redactor.add_secret_data({"password": b64(SECRET)}, namespace="shop")
    shop = redactor.scope("shop")
    message = "event: login with " + SECRET + " failed"
    start_clip = message[: len("event: login with ") + 9] + ELLIPSIS  # `text[:limit - 1] + "…"`
    end_clip = ELLIPSIS + message[len("event: login with ") + 9 :]

    assert shop.redact_text(start_clip) == f"event: login with {REDACTED}{ELLIPSIS}"
    assert shop.redact_text(end_clip) == f"{ELLIPSIS}{REDACTED} failed"
