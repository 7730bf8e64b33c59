"""Adversarial redaction shapes: secrets the first redactor let through, each found by a crafted case.

Every case names the secret part that must not survive and a part that must (the evidence).
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from core.redaction import REDACTED, Redactor, redact_env

SECRET = "Zq9kP2mW7vX4q"  # a value no shape rule recognises on its own (13 bytes: its base64 is padded)


def b64(raw: bytes | str) -> str:
    return base64.b64encode(raw if isinstance(raw, bytes) else raw.encode()).decode()


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("slack xoxb-2048-0123456789-abcdefGHIJ ok", "abcdefGHIJ", "ok"),
        ("posting to https://hooks.slack.com/services/T0AB/B0CD/zY9xW8vU7tS6 now", "zY9xW8vU7tS6", "hooks.slack.com"),
        ("stripe key sk_live_51H8abcdEFGH1234ijkl", "51H8abcdEFGH1234ijkl", "stripe key"),
        ("OPENAI sk-proj-Ab12Cd34Ef56Gh78Ij90Kl", "Ab12Cd34Ef56Gh78Ij90Kl", "OPENAI"),
        ('{"auths":{"reg.example":{"auth":"dXNlcjpodW50ZXIy"}}}', "dXNlcjpodW50ZXIy", "reg.example"),
        ("GET / Cookie: session=s3ss10nV4lue; theme=dark", "s3ss10nV4lue", "GET /"),
        (
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\nlQOYBGb0\nPGPBODYLINE\n-----END PGP PRIVATE KEY BLOCK-----",
            "PGPBODYLINE",
            "END PGP PRIVATE KEY BLOCK",
        ),
        ("-----begin private key-----\nMIIEbodyline\n-----end private key-----", "MIIEbodyline", "end private key"),
        ("…Ebodyline\r\nMIIEbodyline\r\n-----END PRIVATE KEY-----\r\nnext", "MIIEbodyline", "\r\nnext"),
        ("postgres://app:pa/ss@w0rd@db:5432/shop", "ss@w0rd", "@db:5432/shop"),
        ("amqp://app:x/y9Z@rabbit/vhost", "y9Z", "@rabbit/vhost"),
        ("pass=hunter2x and more", "hunter2x", "and more"),
        ("pwd=hunter2y; next", "hunter2y", "next"),
        ("credentials=c0ffeeCAFE user=bob", "c0ffeeCAFE", "user=bob"),
        ("passphrase: s3cretphrase", "s3cretphrase", "passphrase"),
        ("password: |\n  blockline1xyz\n  blockline2xyz\nnext: 1", "blockline", "next: 1"),
        ("db:\n  token: >-\n    foldedline\nafter", "foldedline", "after"),
        ("started app --password hunter2z --verbose", "hunter2z", "--verbose"),
        ("started app --db-password 'two words'", "two words", "--db-password"),
        ("mysql -uroot -phunter2w shop", "hunter2w", "shop"),
        ('"password": "abc\\"defSECRET"', "defSECRET", '"password"'),
        ('log {\\"password\\":\\"hun\\\\\\"ter2SECRET\\"}', "ter2SECRET", "log"),
        ('"private_key_id": "0a1b2c3d4e5f60718293a4b5c6d7e8f9"', "0a1b2c3d4e5f", "private_key_id"),
        ("https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sig=Ab%2Bc9Zx%3D&se=1", "Ab%2Bc9Zx", "sv=2022-11-02"),
        ("SENTRY_DSN https://0a1b2c3d4e5f60718293a4b5c6d7e8f9@o1.ingest.sentry.io/5", "0a1b2c3d", "sentry.io/5"),
        ("dsn https://Abc123Token@sentry.example/1", "Abc123Token", "sentry.example"),
        ("AUTH_HEADER: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy", "AUTH_HEADER"),
        ("SMTP_PASS=Sm7pS3cret DB_PASS=Db7pS3cret", "S3cret", "SMTP_PASS"),
        ("X_PWD=Pw7dS3cret", "Pw7dS3cret", "X_PWD"),
    ],
)
def test_a_secret_shape_is_hidden_and_the_evidence_kept(text: str, hidden: str, kept: str) -> None:
    redacted = Redactor().redact_text(text)

    assert hidden not in redacted
    assert kept in redacted and REDACTED in redacted
    assert Redactor().redact_text(redacted) == redacted  # redacting twice changes nothing


def form_cases() -> list[tuple[str, str, str]]:
    slashed = SECRET + "??>"  # its base64 has `+` and `/`, which the URL-safe alphabet spells `-` and `_`
    assert "+" in b64(slashed) or "/" in b64(slashed)
    return [
        ("unpadded base64", SECRET, b64(SECRET).rstrip("=")),
        ("url-safe base64", slashed, b64(slashed).replace("+", "-").replace("/", "_")),
        *[
            (f"inside a base64 blob at offset {offset}", SECRET, b64(b"x" * offset + SECRET.encode() + b"tail-bytes"))
            for offset in range(3)
        ],
        ("JSON-escaped", SECRET + '"q', json.dumps(SECRET + '"q')[1:-1]),
        ("HTML-escaped", SECRET + "<&>", html.escape(SECRET + "<&>")),
        ("form-encoded", SECRET + " &x", quote_plus(SECRET + " &x")),
        ("URL-encoded with / and @", SECRET + "/@", quote(SECRET + "/@")),
    ]


@pytest.mark.parametrize(("form", "value", "text"), form_cases(), ids=[name for name, _, _ in form_cases()])
def test_a_known_value_is_hidden_in_every_form_it_is_printed_in(form: str, value: str, text: str) -> None:
    redactor = Redactor()
    redactor.add_secret_data({"v": b64(value)}, namespace="shop", secret="app")

    redacted = redactor.scope("shop").redact_text(f"dump: {text} end")

    assert text not in redacted and REDACTED in redacted and redacted.endswith(" end")
    if "blob" in form:  # what is left of the blob is the bytes around the value, a few characters each side
        before, after = redacted.split()[1].split(REDACTED)
        assert len(before) <= 4 and len(after) <= len(b64("tail-bytes")) + 2


def test_each_line_of_a_multi_line_value_is_hidden_when_printed_alone() -> None:
    redactor = Redactor()
    redactor.add_secret_data({"config": b64("user=app\npassword-line-one\nxtra-line-two-9\n")}, namespace="shop")

    redacted = redactor.scope("shop").redact_text("line 1: password-line-one\nline 2: xtra-line-two-9")

    assert "password-line-one" not in redacted and "xtra-line-two-9" not in redacted
    assert "line 1:" in redacted and "line 2:" in redacted


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ({"token": 12345678}, {"token": REDACTED}),
        ({"api_key": ["k-one", "k-two"]}, {"api_key": [REDACTED, REDACTED]}),
        ({"password": {"value": "p-inner", "name": "db"}}, {"password": {"value": REDACTED, "name": "db"}}),
        ({"DB_PASS": 3.14}, {"DB_PASS": REDACTED}),
        ({"client_credentials": ("a-1", "b-2")}, {"client_credentials": (REDACTED, REDACTED)}),
    ],
)
def test_any_value_under_a_secret_named_key_is_hidden_whatever_its_type(value: Any, shown: Any) -> None:
    assert Redactor().redact(value) == shown


def test_the_item_after_a_secret_named_flag_is_hidden() -> None:
    args = ["--db-password", "Arg5ecretA", "--token", "Arg5ecretB", "--verbose", "-p", "8080", "--log", "info"]

    shown = Redactor().redact({"args": args})["args"]

    assert shown == ["--db-password", REDACTED, "--token", REDACTED, "--verbose", "-p", "8080", "--log", "info"]


def test_probe_header_values_are_hidden_but_plain_headers_kept() -> None:
    probe: dict[str, Any] = {
        "httpGet": {
            "path": "/healthz",
            "httpHeaders": [
                {"name": "Authorization", "value": "Bearer abc"},  # a short bearer token
                {"name": "X-Internal-Check", "value": "k3y-9"},
                {"name": "Host", "value": "web.shop"},
            ],
        }
    }

    shown = Redactor().redact({"livenessProbe": probe})["livenessProbe"]["httpGet"]

    assert shown["path"] == "/healthz"
    assert [header["value"] for header in shown["httpHeaders"]] == [REDACTED, REDACTED, "web.shop"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SMTP_PASS", "smtp-literal-1"),
        ("DB_PASS", "db-literal-2"),
        ("MYSQL_ROOT_PWD", "pwd-literal-3"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "creds-literal-4"),
        ("AUTH_HEADER", "Basic dXNlcjpwYXNz"),
        ("UPSTREAM_AUTHORIZATION", "Bearer short"),
        ("SESSION_COOKIE", "sess-literal-5"),
    ],
)
def test_env_names_outside_the_first_list_are_hidden(name: str, value: str) -> None:
    shown = redact_env([{"name": name, "value": value}])

    assert shown == [{"name": name, "value": REDACTED}]


def test_an_authorization_style_value_keeps_only_its_scheme() -> None:
    shown = redact_env([{"name": "UPSTREAM", "value": "Bearer abc"}, {"name": "PROXY", "value": "Basic Zm9v"}])

    assert [var["value"] for var in shown] == [f"Bearer {REDACTED}", f"Basic {REDACTED}"]
