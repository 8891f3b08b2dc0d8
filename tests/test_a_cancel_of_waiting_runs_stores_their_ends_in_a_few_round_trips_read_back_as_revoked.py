"""The ends a cancel stores for its waiting runs' tasks are read in chunks and written in one
pipeline per chunk, as Celery's Redis backend writes a state: AsyncResult reads them REVOKED.

Regression: the store (schedules.revoked_tasks.stored_revoked) went through Celery's
mark_as_revoked one task after another, a GET and then a MULTI/SETEX/PUBLISH/EXEC each: an
import's 2,000 waiting runs cancelled cost 6,019 round trips (3.4 s, 1.1 s without the store)
and printed 2,000 redis-py DeprecationWarnings of setex(). It also wrote a state for a task that
had none, and over none but a SUCCESS.

In process, against the real Redis result backend.
"""

import uuid
import warnings

import pytest
from celery import current_app
from celery.result import AsyncResult

from schedules import revoked_tasks
from tasks.runner import RunWaits

pytestmark = pytest.mark.django_db

WAITING, ENDED, UNTOUCHED = 200, 20, 1000


def packed(round_trips: list) -> list[bytes]:
    return [b"".join(sent) if isinstance(sent, list) else sent for sent in round_trips]


def test_a_cancel_of_waiting_runs_stores_their_ends_in_a_few_round_trips(round_trips):
    # Given 1,220 cancelled runs' tasks told by their worker: 200 parked (RETRY stored), 20 that
    # ended well (SUCCESS stored) and 1,000 whose worker stored no state
    backend = current_app.backend
    waiting = [str(uuid.uuid4()) for _ in range(WAITING)]
    ended = [str(uuid.uuid4()) for _ in range(ENDED)]
    untouched = [str(uuid.uuid4()) for _ in range(UNTOUCHED)]
    for task_id in waiting:
        backend.mark_as_retry(task_id, RunWaits("waiting its turn"))
    for task_id in ended:
        backend.store_result(task_id, {"status": "succeeded"}, "SUCCESS")
    tasks = waiting + ended + untouched

    # When the cancel stores their ends
    round_trips.clear()
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        revoked_tasks.stored_revoked(tasks)

    # Then the states are read in 3 chunks and written in pipelines: no GET per task, and no
    # more round trips than chunks read and written (a pipeline is one round trip)
    commands = packed(round_trips)
    meta = [command for command in commands if b"celery-task-meta" in command]
    assert not [command for command in meta if b"\r\nGET\r\n" in command]
    reads = [command for command in meta if b"\r\nMGET\r\n" in command]
    writes = [command for command in meta if b"SETEX" in command]
    assert len(reads) == 3
    assert len(writes) <= 3
    assert sum(command.count(b"SETEX") for command in writes) == WAITING
    assert len(meta) == len(reads) + len(writes)
    assert not [w for w in warned if "setex" in str(w.message).lower()]
    # ... read back by AsyncResult: the waits REVOKED in words, kept a day as Celery keeps them
    for task_id in waiting:
        result = AsyncResult(task_id)
        assert result.state == "REVOKED", result.info
        assert "cancelled, skipped or deleted while it waited" in str(result.info)
    assert 0 < backend.client.ttl(backend.get_key_for_task(waiting[0])) <= backend.expires
    # ... the ends kept, and no state made for a task that had none
    assert {AsyncResult(task_id).state for task_id in ended} == {"SUCCESS"}
    assert not backend.client.exists(*[backend.get_key_for_task(t) for t in untouched])
