"""The sweep's scan of lost attempts' ends told to Flower and not stored in the result backend
(tasks.lost_tasks.unstored_ends) reads the partial index of those runs alone (schedules.models
run_lost_end_unstored_idx). The planner uses a partial index only for a query whose condition
says the index's: were the two to part (a key renamed in one place), the scan would read the
whole runs table at every sweep pass (results3 hunt).
"""

import pytest
from django.db import connection, transaction

from common import database_clock
from tasks import lost_tasks

pytestmark = pytest.mark.django_db


def test_the_scan_of_unstored_lost_ends_reads_their_index():
    # Given the planner told not to read a table whole where an index serves
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")

        # When the sweep's scan is planned
        plan = lost_tasks.unstored_ends(database_clock.now())[:100].explain()

    # Then it reads the unstored ends' own index
    assert "run_lost_end_unstored_idx" in plan, plan
