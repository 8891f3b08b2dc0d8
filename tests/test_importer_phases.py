"""A running run names its step (download, staging, checks, merge) on its row, so the dashboard
can say why a bar stands at 100 % during a long merge."""

import pytest

from schedules.models import ImportRun
from tests.factories import PRODUCTS_CSV, make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db(transaction=True)

BIG = PRODUCTS_CSV + "".join(f"S-{i},item {i},{i}.5\n" for i in range(20_000))


def test_the_run_row_names_its_step_while_the_file_streams_and_after(alice, csv_server):
    seen: list[str] = []

    def watch(_sent: int) -> None:
        # The HTTP server's thread reads the row as the dashboard would, on its own connection.
        run = ImportRun.objects.order_by("-pk").first()
        seen.append(run.phase)

    # A first load streams the download straight into staging
    imp = make_import(alice, csv_server.serve("/p.csv", BIG, after_chunk=watch))
    first = run_now(imp)
    assert set(seen) == {"staging"}
    assert first.phase == "merge"  # the last step it reached

    # A dataset that holds a file downloads the next one whole before staging it
    seen.clear()
    csv_server.serve("/p.csv", BIG + "Z-1,zither,1\n", after_chunk=watch)
    second = run_now(imp)
    assert set(seen) == {"download"}
    assert (second.status, second.rows_inserted, second.phase) == ("succeeded", 1, "merge")
