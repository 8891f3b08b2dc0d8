"""A real SMTP server on a free local port, for the e-mails a worker sends (EMAIL_URL)."""

from __future__ import annotations

import email
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message

from aiosmtpd.controller import Controller

from project.devservices import free_port


class Mailbox:
    """What the server was sent: one Message per e-mail, in order of arrival."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope) -> str:
        with self._lock:
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def received(self) -> list[Message]:
        with self._lock:
            return list(self.messages)


@contextmanager
def smtp_server() -> Iterator[tuple[str, Mailbox]]:
    """(EMAIL_URL of the server, its mailbox), while the block runs."""
    mailbox = Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", mailbox
    finally:
        controller.stop()
