"""The sweep's scan of lost attempts whose end was not told (tasks.lost_tasks.untold_ends) reads
the partial index of those runs alone (schedules.models run_lost_end_untold_idx). The planner
uses a partial index only for a query whose condition says the index's: were the two to part
(a key renamed in one place), the scan would read the whole runs table at every sweep pass,
with no bound by age any more to keep it off a million runs (sweep5 hunt). Figures at scale:
tests/bench/bench_untold_lost_ends_at_scale.py.
"""

import pytest
from django.db import connection, transaction

from common import database_clock
from tasks import lost_tasks

pytestmark = pytest.mark.django_db


def test_the_scan_of_untold_lost_ends_reads_their_index():
    # Given the planner told not to read a table whole where an index serves
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")

        # When the sweep's scan is planned
        plan = lost_tasks.untold_ends(database_clock.now())[:100].explain()

    # Then it reads the untold ends' own index
    assert "run_lost_end_untold_idx" in plan, plan
