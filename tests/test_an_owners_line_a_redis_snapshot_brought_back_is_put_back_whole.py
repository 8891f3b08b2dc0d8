"""Owners' lines that Redis brings back from an older snapshot are put back whole: a run parked
after the snapshot goes back in its line at the sweep's next pass.

Regression (snapshot hunt): the snapshot brings back the key that says the lines are whole
(owner_lines.KEPT) with the lines as they were, without the runs parked since. The sweep, told
the lines were whole, did not put them back from the database as it does for lines Redis lost
(restarted empty): each such run waited about 12 minutes for reconciliation to find it out of
its line, and its owner's newer runs overtook it. The note now names the run of the Redis
server that made it, and a server started again (from a snapshot or empty) has another.
"""

import shutil

import pytest

from common import owner_lines, redis_client
from project.devservices import free_port
from tasks import fairness, maintenance
from tests.reliability import redis_server
from tests.test_an_owners_line_leaves_no_run_waiting_for_ever import (
    cap_of_one as cap_of_one,  # a fixture: alice's cap of one, held
)
from tests.test_an_owners_line_leaves_no_run_waiting_for_ever import (
    line_of,
    park,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def own_redis(tmp_path, settings):
    """REDIS_URL on a Redis of this test's, which it can snapshot and restart."""
    with redis_server(free_port(), tmp_path) as server:
        settings.REDIS_URL = server.url
        forget_clients()
        yield server
    forget_clients()


def forget_clients() -> None:
    # The process's client, and the scripts the owner's cap registered on it.
    redis_client.client.cache_clear()
    fairness._scripts.cache_clear()


def test_a_run_parked_after_the_snapshot_goes_back_in_its_line(
    alice, cap_of_one, sent, own_redis, tmp_path
):
    # Given alice's first run parked, her line known whole (a sweep), and a snapshot then
    _busy, run_of_alice = cap_of_one
    first, second = run_of_alice(), run_of_alice()
    park(first)
    maintenance.sweep_runs()
    redis_client.client().save()
    shutil.copy(tmp_path / "dump.rdb", tmp_path / "snapshot.rdb")
    # ... and her second run parked after it
    park(second)

    # When Redis crashes and starts again from the snapshot, and the sweep passes
    own_redis.kill()
    shutil.copy(tmp_path / "snapshot.rdb", tmp_path / "dump.rdb")
    own_redis.start()
    assert line_of(alice) == [first.pk]
    maintenance.sweep_runs()

    # Then both wait in her line, in the order they came
    assert line_of(alice) == [first.pk, second.pk]


def test_lines_known_whole_by_this_redis_are_not_read_again(alice, cap_of_one, own_redis):
    # Given alice's run parked and her line known whole
    _busy, run_of_alice = cap_of_one
    waiting = run_of_alice()
    park(waiting)
    maintenance.sweep_runs()
    # ... then taken out of it alone (its hand-on), the lines' note left as it was
    redis_client.client().zrem(owner_lines.line_key(alice.pk), waiting.pk)

    # When the sweep passes, then nothing is put back: the note is this Redis's
    maintenance.sweep_runs()
    assert line_of(alice) == []
