"""Flower's log of a broker it cannot use, in words, and folded (flowerconfig.py installs it).

Flower logged the library's text at each attempt ("Failed to capture events: 'Error 111
connecting to 127.0.0.1:6379. Connection refused.', trying again in 8 seconds.", "Failed to
enable events: this user has no permissions to run the 'publish' command", "Inspect method stats
failed: Error 111 …" for each of four questions), again and again while the broker is away.
Now the first attempt says why as the worker and `/health` do (common.error_words), and the
same words are said again at most once a minute, with how often they were met. A setting that
stops Flower's start (ImproperlyConfigured) is said in one line by project/settings.py: celery's
signal dispatcher logged its traceback first.
"""

from __future__ import annotations

import logging
from typing import Any

from common import error_words
from common.said_once import SaidOnce


def _broker() -> str:
    from celery import current_app

    return error_words.broker_place(current_app.conf.broker_write_url or "")


class FlowerWords(logging.Filter):
    """On Flower's `flower.events` and `flower.inspector` loggers: their broker lines rewritten
    in words, repeats folded."""

    def __init__(self) -> None:
        super().__init__()
        self.said = SaidOnce()

    def filter(self, record: logging.LogRecord) -> bool:
        words = self._words(str(record.msg), record.args)
        if words is None:
            return True
        words = self._login_refused(record.args) or words
        more = self.said.again(words)
        if more is None:
            return False
        record.msg, record.args = words + more, ()
        record.exc_info = record.exc_text = None
        return True

    def _words(self, message: str, args: Any) -> str | None:
        """The words of one of Flower's broker lines, None for any other line."""
        if message.startswith("Failed to capture events") and args:
            error = args[0] if isinstance(args, tuple) else args
            return f"Flower cannot read the workers' events: {self._why(error)}"
        if message.startswith("Failed to enable events") and args:
            error = args[0] if isinstance(args, tuple) else args
            return f"Flower cannot turn the workers' events on: {self._why(error)}"
        if message.startswith("Inspect method") and isinstance(args, tuple):
            # One line for its four questions (active_queues, registered, stats, conf). Without
            # an error, the broker took the question and no worker answered it in time: no
            # worker runs, or they are busy; the broker is not to blame.
            if len(args) > 1:
                return f"Flower cannot ask the workers how they are: {self._why(args[-1])}"
            return "Flower asked the workers how they are: none answered in time"
        return None

    @staticmethod
    def _login_refused(args: Any) -> str | None:
        """`Flower cannot see the workers: the broker at … refuses the login: …` for a broker
        line whose error is a login refusal; None otherwise. Whichever of Flower's operations
        met it (events read, events turned on, workers asked), it is one refusal, said in one
        line folded a minute: it was up to three, each folded apart (words3 hunt)."""
        for error in args if isinstance(args, tuple) else (args,):
            words = isinstance(error, BaseException) and error_words.login_refusal(_broker(), error)
            if words:
                return f"Flower cannot see the workers: {words}"
        return None

    @staticmethod
    def _why(error: Any) -> str:
        place = _broker()
        if isinstance(error, BaseException):
            refused = error_words.refusal(error)
            if refused is not None:
                return f"{place} refuses: {refused}"
            if "no permissions" in " ".join(str(link) for link in error_words.chain(error)):
                # An ACL's refusal: the broker answered.
                return f"{place} refuses: {error_words.reason(error)}"
            return f"cannot reach {place}: {error_words.reason(error)}"
        return f"cannot reach {place}"


class SettingsTraceback(logging.Filter):
    """Celery's signal dispatcher logged the traceback of a setting that stops the start; the
    setting says it in one line itself (project/settings.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        from django.core.exceptions import ImproperlyConfigured

        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, ImproperlyConfigured)


def install() -> None:
    """Flower's loggers take the filters once, however often its configuration is read."""
    said = FlowerWords()
    for name in ("flower.events", "flower.inspector"):
        flower = logging.getLogger(name)
        if not any(isinstance(one, FlowerWords) for one in flower.filters):
            flower.addFilter(said)
    signals = logging.getLogger("celery.utils.dispatch.signal")
    if not any(isinstance(one, SettingsTraceback) for one in signals.filters):
        signals.addFilter(SettingsTraceback())
