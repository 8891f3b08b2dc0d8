"""A run's rows and outcome commit at the strongest durable level that the worker's own
setting (WORKER_SYNCHRONOUS_COMMIT) or importbeat's database asks for: a database at
`remote_apply` under a worker at `on`, or a worker at `remote_apply` on a database at `on`,
commit them applied on the standbys.

Before, the durable commit compared the level it wanted with the database's default only: a
worker at `on` over a database's `remote_apply` committed them at the worker's `on`, and a
worker's own `remote_apply` was set back to `on` for them, as if it were asynchronous
(review2 hunt)."""

from __future__ import annotations

import pytest
from django.db import transaction

from schedules import services
from tests.server_settings_support import database_setting
from tests.test_a_runs_rows_wait_for_the_disk_when_the_role_commits_without_waiting import (
    a_workers_connection,
    synchronous_commit,
)

pytestmark = pytest.mark.django_db(transaction=True)


def a_runs_commit_level(settings, worker_level: str) -> str:
    """The level a run's rows commit at on a worker's connection at `worker_level`."""
    with a_workers_connection(settings, worker_level), transaction.atomic():
        services.durable_commit()
        return synchronous_commit()


def test_alices_run_on_a_worker_at_on_commits_at_the_databases_remote_apply(settings):
    # Given importbeat's database asking its commits to be applied on the standbys
    with database_setting("synchronous_commit", "remote_apply"):
        # When alice's run commits its rows on a worker whose own setting is `on`
        level = a_runs_commit_level(settings, "on")

    # Then they commit applied on the standbys
    assert level == "remote_apply"


def test_bobs_run_on_a_worker_at_remote_apply_commits_at_it(settings):
    # Given a worker asking its commits to be applied on the standbys, on a database at `on`
    # When bob's run commits its rows
    level = a_runs_commit_level(settings, "remote_apply")

    # Then they commit at the worker's level, not a weaker one
    assert level == "remote_apply"
