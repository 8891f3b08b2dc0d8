"""Each of the sweep's scans of lost attempts' ends reads the partial index of its runs alone
(schedules.models): the scan of those whose end was not told (tasks.lost_tasks.untold_ends) reads
run_lost_end_untold_idx, and the scan of those told to Flower and not stored in the result
backend (tasks.lost_tasks.unstored_ends) reads run_lost_end_unstored_idx. The planner uses a
partial index only for a query whose condition says the index's: were the two to part (a key
renamed in one place), the scan would read the whole runs table at every sweep pass, with no
bound by age any more to keep it off a million runs (sweep5 and results3 hunts). Figures at
scale: tests/bench/bench_untold_lost_ends_at_scale.py.
"""

import pytest
from django.db import connection, transaction

from common import database_clock
from tasks import lost_tasks

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("scan", "index"),
    [
        pytest.param(lost_tasks.untold_ends, "run_lost_end_untold_idx", id="untold"),
        pytest.param(lost_tasks.unstored_ends, "run_lost_end_unstored_idx", id="unstored"),
    ],
)
def test_the_scan_of_lost_ends_reads_their_index(scan, index):
    # Given the planner told not to read a table whole where an index serves
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")

        # When the sweep's scan is planned
        plan = scan(database_clock.now())[:100].explain()

    # Then it reads its own ends' own index
    assert index in plan, plan
