"""Beat started on a database it cannot reach (away, a wrong password, no such database) exits
saying why in a line, in words, as the worker does, and with status 1 for its supervisor.

Before (says hunt): django-celery-beat reads its entries at the start, and beat printed
"beat raised exception <class 'django.db.utils.OperationalError'>: OperationalError('connection
failed: …')" and the traceback twice, the second one a character a line: some 1,770 lines.
"""

from __future__ import annotations

import pytest

from common.error_words import CLASS_NAME

pytestmark = [pytest.mark.processes]


def test_beat_started_on_a_database_that_does_not_answer_says_why_and_exits(
    processes, refused_port
):
    port = refused_port

    # When beat starts on a database that does not answer
    beat = processes.start("beat", DATABASE_URL=f"postgres://postgres:pw-123@127.0.0.1:{port}/x")

    # Then it exits, saying why in one line of words
    assert beat.wait(60) == 1
    log = processes.log_of("beat")
    said = [line.split("] ", 1)[-1] for line in log.splitlines() if "not started" in line]
    assert said == [
        f"importbeat beat not started: cannot reach the database x at 127.0.0.1:{port}: "
        "connection refused"
    ], log
    assert not CLASS_NAME.search(said[0])
    # without a traceback, nor the password
    assert "Traceback" not in log and "raised exception" not in log, log[-3000:]
    assert "pw-123" not in log
