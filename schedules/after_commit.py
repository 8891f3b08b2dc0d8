"""Messages sent once a transaction commits, whose refusal by the broker is said in one line.

A notification, an owner's e-mail digest or a replaced credential's job is made in the caller's
transaction and its message sent after the commit. When the broker does not take it (down,
full, a read-only replica), the rows stay, and the sweep sends them again: nothing is lost, and
the caller must not fail. Django's `on_commit(..., robust=True)` logged such a refusal at ERROR
with the whole chained traceback (kombu's and redis-py's, about 195 lines, twice for a late
import's notification in beat), where everything else importbeat says of a full Redis is one
line in words. Here it is one WARNING line: what was not sent, why in words, and what follows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import kombu.exceptions
import redis.exceptions
from django.db import transaction

from common import error_words

logger = logging.getLogger("importbeat.broker")

# What a broker that cannot take a message raises through Celery (services.BROKER_ERRORS).
BROKER_ERRORS = (
    kombu.exceptions.OperationalError,
    kombu.exceptions.BatchPublishError,
    redis.exceptions.RedisError,
    OSError,
)


def why_not_sent(error: BaseException) -> str:
    """Why the broker did not take a message, in words: it refused the login, it refused the
    message (full, a read-only replica), or it could not be reached and why."""
    # A login refusal is no refusal of the message: it was said "the broker refuses new
    # messages: the user name or password …" (review B).
    if words := error_words.login_refusal("the broker", error):
        return words
    refused = error_words.refusal(error)
    if refused is not None:
        return f"the broker refuses new messages: {refused}"
    return f"cannot reach the broker: {error_words.reason(error)}"


def why_for_the_log(error: BaseException) -> str:
    """why_not_sent, and the error's own text where no words say why (the log is where it is
    said then)."""
    why = why_not_sent(error)
    if why.endswith(error_words.UNKNOWN):
        why += f" ({type(error).__name__}: {error_words.log_text(error)})"
    return why


def send_after_commit(
    send: Callable[[], None],
    what: str,
    then: str,
    refused: Callable[[], None] | None = None,
    already_said: tuple[type[BaseException], ...] = (),
) -> None:
    """`send()` once the caller's transaction commits (at once outside one). A broker error is
    logged in one line, `<what> not sent: <why>; <then>`, and `refused()` called (to mark the
    rows for the sweep's next pass); an error of `already_said` (one `send` logged itself, as
    services.send_runs does before it raises BrokerUnavailable) is left at that; any other
    error is logged with its traceback, as Django's robust on_commit does. None reaches the
    caller."""

    def sent() -> None:
        try:
            send()
        except already_said:
            pass
        except BROKER_ERRORS as error:
            logger.warning("%s not sent: %s; %s", what, why_for_the_log(error), then)
            if refused is not None:
                try:
                    refused()
                except Exception:
                    logger.exception("%s could not be marked for the sweep's next pass", what)
        except Exception:
            logger.exception("%s not sent", what)

    transaction.on_commit(sent)
