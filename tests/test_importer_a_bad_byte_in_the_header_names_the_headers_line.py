"""A byte the import's encoding cannot read in the header names the line it is on (engine
hunt).

Regression: the header's message always said "on line 1": blank lines before the header (which
the importer skips) and a quoted name that spans lines put the bad byte further down, and the
editor's line 1 was empty.
"""

import pytest

from tests.factories import make_import
from tests.importer_support import run_now

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (b"sku,n\xe9me\nA-1,x\n", 1),
        (b"\n\nsku,n\xe9me\nA-1,x\n", 3),
        (b"\r\n\r\rsku,n\xe9me\r\nA-1,x\r\n", 4),
        (b'sku,"long\nn\xe9me"\nA-1,x\n', 2),
    ],
    ids=["first-line", "after-blank-lines", "after-crlf-and-cr", "inside-a-quoted-name"],
)
def test_the_message_names_the_line_of_the_bad_byte(alice, csv_server, body, line):
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "failed"
    assert run.error_message == (
        f"the file is not valid utf-8 on line {line} (invalid continuation byte); "
        "set the import's encoding"
    )
