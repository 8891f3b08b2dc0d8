"""A real SMTP server on a free local port, for the e-mails a worker sends (EMAIL_URL)."""

from __future__ import annotations

import asyncio
import email
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message

from aiosmtpd.controller import Controller

from project.devservices import free_port


class Mailbox:
    """What the server was sent: one Message per e-mail, in order of arrival."""

    def __init__(self, refuse_recipients: bool = False, answer_seconds: float = 0) -> None:
        self.messages: list[Message] = []
        self.refuse_recipients = refuse_recipients
        self.answer_seconds = answer_seconds
        self._lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:
        if self.refuse_recipients:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.answer_seconds:
            await asyncio.sleep(self.answer_seconds)
        with self._lock:
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def received(self) -> list[Message]:
        with self._lock:
            return list(self.messages)


@contextmanager
def smtp_server(
    refuse_recipients: bool = False, port: int | None = None, answer_seconds: float = 0
) -> Iterator[tuple[str, Mailbox]]:
    """(EMAIL_URL of the server, its mailbox), while the block runs; `refuse_recipients`: it
    answers every address with 550; `answer_seconds`: it takes each e-mail after that long (a
    slow relay). On `port`, or a free one."""
    mailbox = Mailbox(refuse_recipients, answer_seconds)
    port = port or free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", mailbox
    finally:
        controller.stop()
