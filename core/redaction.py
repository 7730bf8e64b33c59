"""Secrets never leave the cluster: every text that goes to a model, a log or an e-mail passes through a `Redactor`.

Two layers: exact values AMOS has seen in Kubernetes Secrets (in the forms they show up in:
base64 at any alignment, URL-, form-, JSON- and HTML-escaped, line by line), and shape rules
for secrets it has never seen (`password=...`, bearer tokens, JWTs, cloud keys, private keys,
passwords in URLs, ...).

Known values are scoped: a value learned from a Secret in namespace `shop` is looked for in
text about `shop` (`Redactor.scope("shop")`), not in every namespace, and never replaces a
structured identifier (an object's kind, namespace or name, a reason like `OOMKilled`, an
image reference), so a Secret holding `orders` or `OOMKilled` cannot blind AMOS.
Redact the whole text first and clip second (`redact_then_clip`): a clip can cut the
marker a rule needs.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, TypeVar
from urllib.parse import quote, quote_plus

from pydantic import BaseModel

from core.models import FaultKind

REDACTED = "[REDACTED]"
ELLIPSIS = "…"  # what a clip adds where it cut
MIN_SECRET_LENGTH = 4  # a value a caller vouches for (the SMTP password); shorter ones ("on", "1") are everywhere
MIN_LEARNED_LENGTH = 8  # a value read from a Secret, which also holds names like `DB_NAME: orders`
MIN_FORM_LENGTH = 8  # a derived form (a base64 fragment, one line of a value) shorter than this is too common
MIN_FRAGMENT_LENGTH = 4  # the part of a known value a clip left at the edge of a text
MAX_EDGE_VALUE = 256  # longer values (whole keys, files) are also learned line by line

T = TypeVar("T")

# Names whose value is a secret: the tail of `DB_PASSWORD`, `client_secret`, `x-api-key`, `SMTP_PASS`, ...
_SECRET_WORDS = (
    r"password|passwd|passphrase|secret|token|credentials?|api[_-]?key|apikey|access[_-]?key|account[_-]?key"
    r"|secret[_-]?key|private[_-]?key(?:[_-]?id)?|auth[_-]?header|authorization|cookie"
)
# Bare `PWD` is the working directory, so `pwd` counts only after a separator (`DB_PWD`), `pass` after a non-letter.
_SECRET_KEY = re.compile(r"(?:" + _SECRET_WORDS + r"|(?:^|[_.-])pass|[_.-]pwd|^auth)$", re.IGNORECASE)
# Kubernetes API fields whose names end like a secret but hold none.
_NOT_SECRET_KEYS = frozenset({"serviceaccounttoken", "automountserviceaccounttoken"})
_SECRET_FLAG = re.compile(r"--?[A-Za-z0-9_.-]*?(?:" + _SECRET_WORDS + r"|pass|pwd)", re.IGNORECASE)
_AUTH_VALUE = re.compile(r"(?P<scheme>(?:basic|bearer|token|digest|negotiate|apikey)[ \t]+)\S.*", re.IGNORECASE)

# Structured fields that name things: a known value never replaces them (shape rules still apply).
IDENTIFIER_KEYS = frozenset(
    {
        "kind", "namespace", "name", "reason", "image", "phase", "type", "container", "pod", "node", "object",
        "owner", "replicaset", "deployment", "revision_hash", "secretName", "claimName", "key", "category",
        "action", "verb", "source", "status", "uid", "id", "fingerprint", "serviceAccountName", "imageID",
    }
)  # fmt: skip
# Header names whose values are safe to show; any other probe header value is hidden.
_PLAIN_HEADERS = frozenset({"host", "user-agent", "accept", "content-type", "x-forwarded-proto", "x-request-id"})
# Kubernetes vocabulary a Secret value may collide with (lower case).
_VOCABULARY = frozenset(
    word.lower()
    for word in (
        *(kind.value for kind in FaultKind),
        "Pod", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob", "ConfigMap", "Secret",
        "Service", "Namespace", "Node", "Event", "ServiceAccount", "PersistentVolumeClaim", "Ingress",
        "Pending", "Running", "Succeeded", "Failed", "Unknown", "Ready", "ContainersReady", "PodScheduled",
        "Initialized", "Available", "Progressing", "Complete", "ReplicaFailure", "OOMKilled", "Completed",
        "Error", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull", "CreateContainerError",
        "RunContainerError", "ContainerCreating", "PodInitializing", "ContainerCannotRun", "DeadlineExceeded",
        "Evicted", "NodeLost", "BackOff", "FailedScheduling", "FailedMount", "FailedSync", "Killing", "Pulling",
        "Pulled", "Created", "Started", "Scheduled", "SuccessfulCreate", "ScalingReplicaSet",
        "BackoffLimitExceeded", "ReplicaSetUpdated", "NewReplicaSetAvailable", "MinimumReplicasAvailable",
        "MinimumReplicasUnavailable", "Unhealthy", "ProbeWarning", "NodeNotReady", "Preempting",
        "default", "kube-system", "kube-public", "kube-node-lease",
    )
)  # fmt: skip

_NOT_YET_REDACTED = r"(?!" + re.escape(REDACTED) + r")"
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
# What comes right before a name in text: `image "x"`, `namespace x`, `-n x`, `Deployment/x`, `pod x`.
_IDENTIFIER_BEFORE = re.compile(
    r"(?:\b(?:images?|namespaces?)\s*[:=]?\s*\\?[\"']?|(?<![\w-])-n\s+|\b(?:pods?|deployments?|replicasets?"
    r"|statefulsets?|daemonsets?|jobs?|cronjobs?|configmaps?|services?|nodes?)(?:/|\s+\\?[\"']?))\Z",
    re.IGNORECASE,
)
_WORD_STOP = frozenset(" \t\r\n\"'\\`,;()[]{}<>")


# --- shape rules ----------------------------------------------------------------------------------------


def _keep_key(match: re.Match[str]) -> str:
    if match["name"].lower() == "pwd" and (match["value"] or "").startswith("/"):
        return match[0]  # PWD=/app is the working directory
    quote_char = match["quote"] or ""
    return f"{match['key']}{quote_char}{REDACTED}{quote_char}"


def _keep_short_flag(match: re.Match[str]) -> str:
    value = match["value"]
    if re.fullmatch(r"[a-z]+|[0-9:.]+", value):
        return match[0]  # `find -print`, `-p8080:80`
    return f"{match['key']}{REDACTED}"


_PLAIN_URL_USERS = frozenset(
    {"git", "postgres", "root", "admin", "user", "mysql", "redis", "guest", "anonymous", "ftp"}
)


def _keep_url_user(match: re.Match[str]) -> str:
    if match["user"] in _PLAIN_URL_USERS:
        return match[0]  # git@github.com, postgres@db: a user name, not a token
    return f"{match['scheme']}{REDACTED}@"


# A quoted value ends at its own quote, not at an escaped one (`"a\\"b"`, `\\"a\\\\\\"b\\"` in escaped JSON).
_QUOTED = r"(?P<quote>\\*[\"'])[^\n]{0,1024}?(?<!\\)(?P=quote)"
_AUTH_SCHEME = r"(?:(?:basic|bearer|token|digest|negotiate)[ \t]+)?+"

# Order matters: URLs and whole headers first, so the key-value rule does not cut them in half.
# Every rule starts on a literal or a bounded run, so a 100 kB log line cannot make one quadratic.
_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # Slack incoming webhooks: the path is the credential.
    (
        re.compile(r"(?P<key>https://hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]+"),
        r"\g<key>" + REDACTED,
    ),
    # scheme://user:password@host keeps the user, which helps diagnosis; the password may hold / or @.
    (
        re.compile(
            r"\b(?P<prefix>[a-z][a-z0-9+.-]{0,31}://[^\s:/@]{0,256}:)" + _NOT_YET_REDACTED + r"[^\s]{1,256}?@"
            r"(?=[A-Za-z0-9.\-\[\]]+(?::[0-9]+)?(?:[/?#\s\"',;)\\]|\Z))",
            re.IGNORECASE,
        ),
        r"\g<prefix>" + REDACTED + "@",
    ),
    # scheme://token@host (a Sentry DSN, a token in a git URL).
    (
        re.compile(
            r"\b(?P<scheme>[a-z][a-z0-9+.-]{0,31}://)" + _NOT_YET_REDACTED + r"(?P<user>[A-Za-z0-9._~%+-]{1,256})@",
            re.IGNORECASE,
        ),
        _keep_url_user,
    ),
    # Authorization: Bearer|Basic|... <credentials>
    (
        re.compile(
            # The possessive `?+` keeps "Bearer [REDACTED]" from being read as the value "Bearer".
            r"(?P<key>\bauthorization\\*[\"']?[ \t]*[:=][ \t]*\\*[\"']?(?:[a-z]+[ \t]+)?+)"
            + _NOT_YET_REDACTED
            + r"[^\s\"',;\\]+",
            re.IGNORECASE,
        ),
        r"\g<key>" + REDACTED,
    ),
    # Cookie / Set-Cookie headers: the whole value.
    (
        re.compile(
            r"(?P<key>\b(?:set-)?cookie\\*[\"']?[ \t]*[:=][ \t]*+\\*[\"']?+)" + _NOT_YET_REDACTED + r"[^\r\n\"'\\]+",
            re.IGNORECASE,
        ),
        r"\g<key>" + REDACTED,
    ),
    # Docker config: "auth": "<base64 user:password>".
    (
        re.compile(r"(?P<key>\\*\"auth\\*\"[ \t]*:[ \t]*\\*\")" + _NOT_YET_REDACTED + r"[A-Za-z0-9+/=]{4,}"),
        r"\g<key>" + REDACTED,
    ),
    # A bare bearer token; the length floor keeps prose like "Bearer token" readable.
    (re.compile(r"\b(?P<key>Bearer\s+)[A-Za-z0-9\-._~+/]{16,}=*"), r"\g<key>" + REDACTED),
    # A bare basic credential: base64 with mixed case or digits, which prose words are not.
    (
        re.compile(r"\b(?P<key>Basic\s+)(?=[A-Za-z0-9+/]*[a-z])(?=[A-Za-z0-9+/]*[A-Z0-9+/])[A-Za-z0-9+/]{8,}={0,2}"),
        r"\g<key>" + REDACTED,
    ),
    # JWTs (Kubernetes service-account tokens are JWTs).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{1,1024}\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),
    # AWS access key ids.
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    # GitHub and GitLab tokens.
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_-]{20,})"), REDACTED),
    # Google API keys.
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"), REDACTED),
    # Slack tokens.
    (re.compile(r"\b(?:xox[abposre]-[A-Za-z0-9-]{10,}|xapp-[0-9]-[A-Za-z0-9-]{10,})"), REDACTED),
    # Stripe secret and restricted keys; OpenAI and Anthropic keys.
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"), REDACTED),
    (re.compile(r"\bsk-(?:(?:proj|svcacct|admin|ant)-[A-Za-z0-9_-]{16,}|[A-Za-z0-9]{32,})"), REDACTED),
    # Azure SAS signature in a URL.
    (re.compile(r"(?P<key>[?&]sig=)" + _NOT_YET_REDACTED + r"[^&\s\"'\\]+"), r"\g<key>" + REDACTED),
    # --password X, --db-password "x y" (the `=` form is the key-value rule's).
    (
        re.compile(
            r"(?P<key>(?<![\w-])--?[A-Za-z0-9_.-]{0,64}?(?:"
            + _SECRET_WORDS
            + r"|pass|pwd)[ \t]+)(?!-)"
            + _NOT_YET_REDACTED
            + r"(?:\"[^\"\n]*\"|'[^'\n]*'|[^\s\"']+)",
            re.IGNORECASE,
        ),
        r"\g<key>" + REDACTED,
    ),
    # mysql -pX
    (re.compile(r"(?P<key>(?<![\w-])-p)" + _NOT_YET_REDACTED + r"(?P<value>[^\s\"'-][^\s\"']{2,})"), _keep_short_flag),
    # password=..., "api_key": "...", secret: ..., \"token\":\"...\" -- keep the key, drop the value.
    (
        re.compile(
            r"(?P<key>(?P<name>"
            + _SECRET_WORDS
            + r"|(?<![a-z])pass|(?<![a-z])pwd)(?:\\*[\"'])?[ \t]*[:=][ \t]*"
            + _AUTH_SCHEME
            + r")"
            + _NOT_YET_REDACTED
            + r"(?:"
            + _QUOTED
            + r"|(?![|>][+-]?[0-9]?[ \t\r]*(?:\n|\Z))(?P<value>[^\s\"'&,;}\]\\]+))",  # `|` starts a YAML block
            re.IGNORECASE,
        ),
        _keep_key,
    ),
)

# YAML block scalars under a secret name: `password: |` and the indented lines after it.
_BLOCK_HEAD = re.compile(
    r"^(?P<indent>[ \t]*)(?:-[ \t]+)?[\"']?[A-Za-z0-9_.-]*(?:" + _SECRET_WORDS + r"|pass|pwd)[\"']?[ \t]*:[ \t]*"
    r"[|>][+-]?[0-9]?[ \t\r]*$",
    re.IGNORECASE | re.MULTILINE,
)

_PEM_MARKER = re.compile(r"-----(?P<edge>BEGIN|END) (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----", re.IGNORECASE)
_PEM_LINE_BREAK = re.compile(r"\r?\n|\\r\\n|\\n")
_BASE64_LINE = re.compile(r"[ \t]*[A-Za-z0-9+/=]*[ \t]*")
_BASE64_TAIL = re.compile(r"[A-Za-z0-9+/=]+[ \t]*\Z")


def _redact_pem(text: str) -> str:
    """PEM and PGP private keys: from BEGIN to END, to the end of a cut text, or back from an END whose BEGIN was cut."""
    if "-----" not in text:
        return text
    pieces: list[str] = []
    position = 0  # text before this is done
    begin: re.Match[str] | None = None
    for marker in _PEM_MARKER.finditer(text):
        if marker["edge"].upper() == "BEGIN":
            if begin is None:
                pieces.append(text[position : marker.end()])
                begin = marker
            continue
        if begin is not None:  # BEGIN ... END
            pieces.append(REDACTED + marker[0])
            begin = None
        else:  # END whose BEGIN the clip cut off: walk back over the key body
            body_start = _pem_body_start(text, position, marker.start())
            pieces.append(text[position:body_start] + (REDACTED if body_start < marker.start() else "") + marker[0])
        position = marker.end()
    if begin is not None:  # BEGIN with its END cut off
        return "".join(pieces) + REDACTED
    return "".join(pieces) + text[position:]


def _pem_body_start(text: str, floor: int, end: int) -> int:
    """Where the key body before an END line starts: the whole base64 lines above it, and, on the text's
    first line (which a clip may have cut mid-line), its base64 tail."""
    line_end = end
    for line_break in reversed(list(_PEM_LINE_BREAK.finditer(text, floor, end))):
        if not _BASE64_LINE.fullmatch(text, line_break.end(), line_end):
            return line_end
        line_end = line_break.start()
    if _BASE64_LINE.fullmatch(text, floor, line_end):
        return floor
    tail = _BASE64_TAIL.search(text, floor, line_end) if floor == 0 else None
    return tail.start() if tail else line_end


def _redact_yaml_blocks(text: str) -> str:
    if "|" not in text and ">" not in text:
        return text
    out: list[str] = []
    position = 0
    for head in _BLOCK_HEAD.finditer(text):
        if head.start() < position:
            continue
        indent = len(head["indent"].expandtabs())
        body_start = cursor = head.end() + 1 if text.startswith("\n", head.end()) else head.end()
        while cursor < len(text):
            stop = text.find("\n", cursor)
            line = text[cursor : stop if stop >= 0 else len(text)]
            stripped = line.strip()
            if stripped and len(line) - len(line.lstrip()) <= indent:
                break
            cursor = stop + 1 if stop >= 0 else len(text)
        if cursor > body_start:
            out.append(text[position:body_start] + " " * (indent + 2) + REDACTED + "\n")
            position = cursor
    if not out:
        return text
    return "".join(out) + text[position:]


def redact_shapes(text: str) -> str:
    """The shape rules alone: secrets recognisable without knowing their value."""
    text = _redact_pem(text)
    text = _redact_yaml_blocks(text)
    for pattern, replacement in _RULES:
        text = pattern.sub(replacement, text)
    return text


def hide_auth_value(value: str) -> str:
    """`Bearer abc`, `Basic dXNl...` as a whole value (a header, an env value): keep the scheme, hide the rest."""
    match = _AUTH_VALUE.fullmatch(value.strip())
    return f"{match['scheme']}{REDACTED}" if match and REDACTED not in value else value


def is_secret_name(name: str) -> bool:
    """Whether a key, env var or header name holds a secret (`DB_PASSWORD`, `SMTP_PASS`, `X-Api-Key`, `AUTH_HEADER`)."""
    return bool(_SECRET_KEY.search(name)) and name.lower() not in _NOT_SECRET_KEYS


# --- known values ---------------------------------------------------------------------------------------


def _base64_forms(raw: bytes) -> set[str]:
    """The base64 text of `raw` on its own (padded and not) and inside a larger blob at each of the 3 alignments."""
    forms: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        whole_chars = (offset + len(raw)) * 8 // 6  # chars fully determined by these bytes
        fragment = encoded[(0, 2, 3)[offset] : whole_chars]
        forms.add(fragment)
        if offset == 0:
            forms |= {encoded, encoded.rstrip("=")}
    return forms | {form.replace("+", "-").replace("/", "_") for form in forms}  # URL-safe alphabet


def _forms(value: str) -> set[str]:
    """Every form in which `value` can show up in a log, an event or a dumped object."""
    json_escaped = json.dumps(value)[1:-1]
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json_escaped,
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(json_escaped)[1:-1],  # JSON inside a JSON string
        html.escape(value),
        html.escape(value, quote=False),
    }
    forms |= _base64_forms(value.encode())
    return {form for form in forms if form == value or len(form) >= MIN_FORM_LENGTH}


def _values_of(raw: str, minimum: int) -> set[str]:
    """The value itself and, for a multi-line value, each line of it."""
    value = raw.strip()
    if len(value) < minimum:
        return set()
    values = {value}
    if "\n" in value:
        for line in value.splitlines():
            line = line.strip()
            if len(line) >= max(minimum, MIN_FORM_LENGTH) and not line.startswith("-----"):
                values.add(line)
    return values


def _alternation(values: Iterable[str]) -> str:
    """One regex for many literals, as a trie: fast however many values there are, and the longest match wins."""
    trie: dict[str, Any] = {}
    for value in values:
        node = trie
        for char in value:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = []
        for char in sorted(key for key in node if key):
            chain, child = [char], node[char]
            while len(child) == 1 and "" not in child:  # a run of single children is one literal
                ((next_char, child),) = child.items()
                chain.append(next_char)
            branches.append(re.escape("".join(chain)) + build(child))
        if not branches:
            return ""
        group = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return "(?:" + group + ")?" if "" in node else group

    return build(trie)


@dataclass(frozen=True)
class _Compiled:
    """The known values of one scope, ready to use."""

    version: int
    pattern: re.Pattern[str] | None
    protected: frozenset[str]
    prefixes: frozenset[str]  # beginnings of known values, for a clip that cut one at the end of a text
    suffixes: frozenset[str]  # and their ends, for a clip at the start


def _edges(values: Iterable[str], take: Callable[[str, int], str]) -> frozenset[str]:
    return frozenset(
        take(value, size)
        for value in values
        if len(value) <= MAX_EDGE_VALUE
        for size in range(MIN_FRAGMENT_LENGTH, len(value))
    )


@dataclass
class _Store:
    """What all scopes of one Redactor share: known values by namespace and Secret, and protected identifiers."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    values: dict[str | None, dict[str, set[str]]] = field(default_factory=dict)  # namespace -> Secret -> values
    protected: set[str] = field(default_factory=set)  # lower case
    version: int = 0
    compiled: dict[str | None, _Compiled] = field(default_factory=dict)

    def learn(self, namespace: str | None, secret: str, values: set[str]) -> None:
        with self.lock:
            known = self.values.setdefault(namespace, {}).setdefault(secret, set())
            if values <= known and (namespace is None or namespace.lower() in self.protected):
                return
            known |= values
            if namespace is not None:
                self.protected.add(namespace.lower())  # a namespace AMOS reads Secrets in is an identifier
            self.version += 1

    def protect(self, identifiers: Iterable[str]) -> None:
        with self.lock:
            self.protected |= {identifier.lower() for identifier in identifiers if identifier}
            self.version += 1

    def scope(self, namespace: str | None) -> _Compiled:
        """The known values for `namespace` and the global ones (all of them when unscoped), compiled once per change."""
        cached = self.compiled.get(namespace)
        if cached is not None and cached.version == self.version:
            return cached
        with self.lock:
            version = self.version
            scopes = list(self.values) if namespace is None else [None, namespace]
            values = {value for scope in scopes for secret in self.values.get(scope, {}).values() for value in secret}
            protected = frozenset(self.protected)
        forms = {form for value in values for form in _forms(value)}
        edge_values = values | {json.dumps(value)[1:-1] for value in values}
        compiled = _Compiled(
            version=version,
            pattern=re.compile(_alternation(forms)) if forms else None,
            protected=protected,
            prefixes=_edges(edge_values, lambda value, size: value[:size]),
            suffixes=_edges(edge_values, lambda value, size: value[-size:]),
        )
        self.compiled[namespace] = compiled
        return compiled


def _enclosing(text: str, start: int, end: int, chars: Callable[[str], bool]) -> tuple[int, int]:
    while start > 0 and chars(text[start - 1]):
        start -= 1
    while end < len(text) and chars(text[end]):
        end += 1
    return start, end


def _is_identifier(text: str, match: re.Match[str], protected: frozenset[str]) -> bool:
    """Whether a known value found in `text` is really an identifier: Kubernetes vocabulary, a name, an image.

    Checks the value, the name-like token around it, and the words before it (`image "..."`,
    `namespace ...`, `Deployment/...`).
    """
    found = match[0].lower()
    if found in _VOCABULARY or found in protected:
        return True
    start, end = _enclosing(text, match.start(), match.end(), _TOKEN_CHARS.__contains__)
    token = text[start:end].lower()
    if token in _VOCABULARY or token in protected:
        return True
    word_start, _ = _enclosing(text, match.start(), match.end(), lambda char: char not in _WORD_STOP)
    return bool(_IDENTIFIER_BEFORE.search(text, max(0, word_start - 24), word_start)) or bool(
        _IDENTIFIER_BEFORE.search(text, max(0, start - 24), start)
    )


def _hide_cut_fragments(text: str, known: _Compiled) -> str:
    """A clip that cut a known value leaves part of it at the edge, next to the `…`: hide that part too."""
    if text.endswith(ELLIPSIS) and known.prefixes:
        body = text[: -len(ELLIPSIS)]
        for size in range(min(len(body), MAX_EDGE_VALUE), MIN_FRAGMENT_LENGTH - 1, -1):
            if body[-size:] in known.prefixes:
                text = body[:-size] + REDACTED + ELLIPSIS
                break
    if text.startswith(ELLIPSIS) and known.suffixes:
        body = text[len(ELLIPSIS) :]
        for size in range(min(len(body), MAX_EDGE_VALUE), MIN_FRAGMENT_LENGTH - 1, -1):
            if body[:size] in known.suffixes:
                text = ELLIPSIS + REDACTED + body[size:]
                break
    return text


def clip_text(text: str, limit: int, keep: Literal["end", "start"] = "end") -> str:
    """Cut `text` to `limit` characters, marking the cut with `…`; keeping the end starts on a whole line."""
    if len(text) <= limit:
        return text
    if keep == "start":
        return text[: max(0, limit - 1)] + ELLIPSIS
    cut = text[-(limit - 1) :] if limit > 1 else ""
    return ELLIPSIS + (cut[cut.find("\n") + 1 :] if "\n" in cut else cut)


class Redactor:
    """Replaces secret values and secret-shaped text with `[REDACTED]`.

    Safe to share between threads; values may be learned while other threads redact.
    `scope(namespace)` gives a view on the same store that looks only for that namespace's
    values (and the global ones, given to the constructor or `add`).
    """

    def __init__(self, values: Iterable[str] = (), *, _store: _Store | None = None, _namespace: str | None = None):
        self._store = _store or _Store()
        self.namespace = _namespace
        self.add(values)

    def scope(self, namespace: str) -> Redactor:
        """The same redactor, looking for the values of `namespace`'s Secrets and the global ones."""
        return Redactor(_store=self._store, _namespace=namespace)

    @classmethod
    def from_secret_data(cls, *secret_data: Mapping[str, str] | None) -> Redactor:
        """Build from the base64 `data` maps of Kubernetes Secrets, as the API returns them."""
        redactor = cls()
        for data in secret_data:
            redactor.add_secret_data(data)
        return redactor

    def add_secret_data(
        self, data: Mapping[str, str] | None, *, namespace: str | None = None, secret: str = ""
    ) -> None:
        """Learn the values of one Secret's `data` (in `namespace`, else this view's), so a Secret read mid-incident is covered."""
        values: set[str] = set()
        for encoded in (data or {}).values():
            try:
                decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                if len(encoded) >= MIN_LEARNED_LENGTH:
                    values.add(encoded)  # binary data (a keystore, say): only the base64 form can appear in text
                continue
            learned = _values_of(decoded, MIN_LEARNED_LENGTH)
            if learned:
                values |= learned | {encoded}  # a dumped Secret shows the base64 form
        scope = namespace if namespace is not None else self.namespace
        self._store.learn(scope, secret, values)

    def add(self, values: Iterable[str]) -> None:
        """Learn plain secret values a caller vouches for (global, whatever the view's namespace)."""
        learned: set[str] = set()
        for raw in values:
            learned |= _values_of(raw, MIN_SECRET_LENGTH)
        if learned:
            self._store.learn(None, "", learned)

    def protect(self, identifiers: Iterable[str]) -> None:
        """Names a known value must never replace (a namespace, a workload), though a Secret holds the same text."""
        self._store.protect(identifiers)

    def redact_text(self, text: str) -> str:
        return self._redact_text(text, frozenset())

    def redact_then_clip(self, text: str, limit: int, keep: Literal["end", "start"] = "end") -> str:
        """Redact the whole text, then clip it: a clip first could cut the BEGIN line a rule needs."""
        return clip_text(self.redact_text(text), limit, keep)

    def _redact_text(self, text: str, identifiers: frozenset[str]) -> str:
        known = self._store.scope(self.namespace)
        if known.pattern is not None:
            protected = known.protected | identifiers

            def replace(match: re.Match[str]) -> str:
                return match[0] if _is_identifier(match.string, match, protected) else REDACTED

            text = known.pattern.sub(replace, text)
            if text.startswith(ELLIPSIS) or text.endswith(ELLIPSIS):
                text = _hide_cut_fragments(text, known)
        return redact_shapes(text)

    def redact(self, value: T) -> T:
        """Redact strings anywhere in `value`: text, dicts, lists, tuples and pydantic models.

        Dict keys are kept; any value under a secret-looking key (`password`, `apiKey`, ...) is
        hidden whole, whatever its type; so is the item after a secret-named flag in a list
        (`["--db-password", "x"]`) and a probe header's value. Identifier fields (`kind`,
        `namespace`, `name`, `reason`, `image`, ...) only pass the shape rules, and their values
        are not redacted where the text around them repeats them. Enums and other non-text leaves
        pass through unchanged.
        """
        if isinstance(value, BaseModel):
            dumped = value.model_dump()
            return type(value).model_validate(self._redact(dumped, _identifiers(dumped)))
        return self._redact(value, _identifiers(value))  # type: ignore[no-any-return]

    def _redact(self, value: Any, identifiers: frozenset[str]) -> Any:
        if isinstance(value, Enum):
            return value
        if isinstance(value, str):
            return self._redact_text(value, identifiers)
        if isinstance(value, BaseModel):
            return self.redact(value)
        if isinstance(value, Mapping):
            return self._redact_mapping(value, identifiers)
        if isinstance(value, list):
            return self._redact_items(value, identifiers)
        if isinstance(value, tuple):
            return tuple(self._redact_items(list(value), identifiers))
        return value

    def _redact_mapping(self, value: Mapping[Any, Any], identifiers: frozenset[str]) -> dict[Any, Any]:
        name = value.get("name")
        pair_is_secret = isinstance(name, str) and is_secret_name(name) and "value" in value
        shown: dict[Any, Any] = {}
        for key, item in value.items():
            if (pair_is_secret and key == "value") or (isinstance(key, str) and is_secret_name(key)):
                shown[key] = _hide(item)
            elif key in IDENTIFIER_KEYS and isinstance(item, str):
                shown[key] = redact_shapes(item)
            elif key == "httpHeaders" and isinstance(item, list):
                shown[key] = [_hide_header(header) for header in item]
            elif key == "value" and isinstance(item, str):
                shown[key] = hide_auth_value(self._redact_text(item, identifiers))
            else:
                shown[key] = self._redact(item, identifiers)
        return shown

    def _redact_items(self, items: list[Any], identifiers: frozenset[str]) -> list[Any]:
        shown: list[Any] = []
        hide_next = False
        for item in items:
            if hide_next and isinstance(item, str) and not item.startswith("-"):
                shown.append(REDACTED)
            else:
                shown.append(self._redact(item, identifiers))
            hide_next = isinstance(item, str) and bool(_SECRET_FLAG.fullmatch(item))
        return shown


def _hide(item: Any) -> Any:
    """Hide a value under a secret-named key: text, numbers, every leaf of a list or dict (names stay)."""
    if item is None or isinstance(item, bool) or item in ("", [], {}):
        return item
    if isinstance(item, Mapping):
        return {key: (value if key in IDENTIFIER_KEYS and isinstance(value, str) else _hide(value))
                for key, value in item.items()}  # fmt: skip
    if isinstance(item, list | tuple):
        return type(item)(_hide(value) for value in item)
    return REDACTED


def _hide_header(header: Any) -> Any:
    if not isinstance(header, Mapping) or "value" not in header:
        return header
    name = str(header.get("name", "")).lower()
    return {**header, "value": header["value"] if name in _PLAIN_HEADERS else _hide(header["value"])}


def _identifiers(value: Any) -> frozenset[str]:
    """The identifier fields of a structure (a workload's namespace and name, reasons, images), lower case."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for key, child in item.items():
                if key in IDENTIFIER_KEYS and isinstance(child, str) and child:
                    found.add(child.lower())
                elif isinstance(child, Mapping | list | tuple):
                    stack.append(child)
        elif isinstance(item, list | tuple):
            stack.extend(child for child in item if isinstance(child, Mapping | list | tuple))
    return frozenset(found)


def redact_env(env: Iterable[Mapping[str, Any]], redactor: Redactor | None = None) -> list[dict[str, Any]]:
    """Show a container's `env` list (API JSON, camelCase) without its secrets, in the same shape.

    A variable taken from a `secretKeyRef` shows `[REDACTED]` as its value and keeps its
    reference, which is what diagnosis needs; a literal value under a secret-looking name
    is redacted whole; an `Authorization`-style value keeps only its scheme; other literal
    values go through the redactor.
    """
    redactor = redactor or Redactor()
    shown: list[dict[str, Any]] = []
    for var in env:
        name = str(var.get("name", ""))
        entry: dict[str, Any] = {"name": name}
        value_from = var.get("valueFrom")
        if value_from and value_from.get("secretKeyRef"):
            entry["value"] = REDACTED
        elif var.get("value") is not None:
            value = str(var["value"])
            entry["value"] = (
                REDACTED if value and is_secret_name(name) else hide_auth_value(redactor.redact_text(value))
            )
        if value_from:
            entry["valueFrom"] = redactor.redact(dict(value_from))
        shown.append(entry)
    return shown
