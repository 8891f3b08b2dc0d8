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
        message = str(record.msg)
        if message.startswith("Failed to capture events") and record.args:
            error = record.args[0] if isinstance(record.args, tuple) else record.args
            words = f"Flower cannot read the workers' events: {self._why(error)}"
        elif message.startswith("Failed to enable events") and record.args:
            error = record.args[0] if isinstance(record.args, tuple) else record.args
            words = f"Flower cannot turn the workers' events on: {self._why(error)}"
        elif message.startswith("Inspect method") and isinstance(record.args, tuple):
            # One line for its four questions (active_queues, registered, stats, conf). Without
            # an error, the broker took the question and no worker answered it in time: no
            # worker runs, or they are busy; the broker is not to blame.
            if len(record.args) > 1:
                why = self._why(record.args[-1])
                words = f"Flower cannot ask the workers how they are: {why}"
            else:
                words = "Flower asked the workers how they are: none answered in time"
        else:
            return True
        more = self.said.again(words)
        if more is None:
            return False
        record.msg, record.args = words + more, ()
        record.exc_info = record.exc_text = None
        return True

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
