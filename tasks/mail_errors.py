"""A mail server's failure in plain words, and whether another try may go through.

An e-mail that the server refused or could not take used to leave its notification `pending`
without a word, sent again every half hour by the sweep, for ever; the task's traceback was
the only place that said why. Now the delivery log says it, and the task retries what may
pass later (the server unreachable, a 4xx answer) with the webhooks' backoff.
"""

from __future__ import annotations

import smtplib

from django.conf import settings

from schedules.notifications import ADDRESS_REFUSED, SERVER_REFUSALS

from .destinations import NoAnswer
from .errors import ImportFailed, PermanentImportError, TransientImportError

# What Django's SMTP backend raises: smtplib's errors, and the socket's (OSError).
MAIL_ERRORS = (smtplib.SMTPException, OSError)


def mail_failure(error: BaseException) -> ImportFailed:
    """Transient or permanent, with words a user can act on (no class names)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(
            f"{address} ({_answer(code, text)})"
            for address, (code, text) in error.recipients.items()
        )
        return PermanentImportError(f"{ADDRESS_REFUSED} {refused}")
    if isinstance(error, smtplib.SMTPAuthenticationError):
        answer = _answer(error.smtp_code, error.smtp_error)
        return PermanentImportError(
            f"{SERVER_REFUSALS[0]} ({answer}): check the user and password of EMAIL_URL"
        )
    if isinstance(error, smtplib.SMTPSenderRefused):
        return PermanentImportError(
            f"{SERVER_REFUSALS[1]} {error.sender} "
            f"({_answer(error.smtp_code, error.smtp_error)}): check DEFAULT_FROM_EMAIL"
        )
    if isinstance(error, smtplib.SMTPResponseException):
        kind = PermanentImportError if error.smtp_code >= 500 else TransientImportError
        return kind(
            f"the mail server refused the e-mail ({_answer(error.smtp_code, error.smtp_error)})"
        )
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return TransientImportError("the mail server closed the connection")
    if isinstance(error, smtplib.SMTPException):
        return TransientImportError(f"the mail server failed: {error}")
    reason = getattr(error, "strerror", None) or str(error) or "no answer"
    return NoAnswer(f"cannot reach {mail_server()} ({reason})", reason)


def mail_server() -> str:
    """The mail server as the delivery log names it, and as its destination (destinations)."""
    return f"the mail server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"


def _answer(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"
