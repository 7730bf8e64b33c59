"""A real SMTP server for tests (aiosmtpd): it keeps every message and lets a test wait for one."""

from __future__ import annotations

import email
import socket
import threading
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.smtp import Envelope, Session

MAIL_TIMEOUT = 150.0


class Inbox:
    """An aiosmtpd handler that keeps every message and lets a test wait for one."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.port = 0
        self._changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()
        return "250 OK"

    def wait(self, subject: str, timeout: float = MAIL_TIMEOUT) -> EmailMessage:
        def found() -> EmailMessage | None:
            return next((m for m in self.messages if subject in str(m["Subject"])), None)

        with self._changed:
            self._changed.wait_for(lambda: found() is not None, timeout)
            message = found()
        assert message is not None, f"no mail with {subject!r} in {timeout:.0f} s; got {self.subjects()}"
        return message

    def subjects(self) -> list[str]:
        with self._changed:
            return [str(m["Subject"]) for m in self.messages]


def body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
