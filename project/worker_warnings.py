"""Celery's notice of a default importbeat has already chosen, kept out of the worker's log.

At every lost broker connection Celery's consumer warns, in nine lines naming its source file,
that Celery 6 will cancel the running tasks on connection loss by default. importbeat sets
that setting itself, to False (settings,
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS: a restarted Redis without
persistence lost the messages a cancel would rely on), so the coming default changes nothing
here, and the notice buried the one line that said the connection was lost.
"""

from __future__ import annotations

import warnings
from typing import Any

from celery.exceptions import CPendingDeprecationWarning
from celery.signals import celeryd_after_setup

SETTING_CHOSEN = r"(?s).*worker_cancel_long_running_tasks_on_connection_loss"


@celeryd_after_setup.connect(weak=False, dispatch_uid="importbeat.worker_warnings")
def leave_out_the_notice_of_a_chosen_default(**_: Any) -> None:
    # After Celery's logging set-up, which shows every pending deprecation ("always") ahead
    # of the filters set before it.
    warnings.filterwarnings("ignore", message=SETTING_CHOSEN, category=CPendingDeprecationWarning)
