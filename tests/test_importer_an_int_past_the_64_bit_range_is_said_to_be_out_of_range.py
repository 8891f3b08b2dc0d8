"""An int column's value past the 64-bit range is said to be out of range (engine hunt).

Regression: 99999999999999999999 was refused as "not a valid int: expected a whole number",
a reason that contradicted the whole number beside it and named no range. Both staging paths
check values in the same SQL, so both say it alike.
"""

import pytest

from tasks.engine.validate import INT_OUT_OF_RANGE
from tests.factories import make_import
from tests.importer_support import (  # noqa: F401
    both_paths,
    records,
    row_errors,
    run_now,
    staging_path,
)

pytestmark = pytest.mark.django_db

WHOLE = "not a valid int: expected a whole number"


def test_the_words_name_the_range():
    assert INT_OUT_OF_RANGE == (
        "not a valid int: the whole number is out of range "
        "(an int is from -9,223,372,036,854,775,808 to 9,223,372,036,854,775,807)"
    )


@both_paths
def test_a_whole_number_past_either_end_is_out_of_range(alice, csv_server):
    body = (
        "sku,n\n"
        "A-1,99999999999999999999\n"
        "B-2, -9223372036854775809 \n"
        "C-3,9223372036854775807\n"
        "D-4,-9223372036854775808\n"
        "E-5,4.5\n"
        "F-6,12abc\n"
    )
    imp = make_import(
        alice, csv_server.serve("/p.csv", body), columns=[{"name": "n", "type": "int"}]
    )

    run = run_now(imp)

    assert run.status == "partial"
    assert row_errors(run) == [
        (2, "n", INT_OUT_OF_RANGE),
        (3, "n", INT_OUT_OF_RANGE),
        (6, "n", WHOLE),
        (7, "n", WHOLE),
    ]
    assert records(imp) == {
        "C-3": {"sku": "C-3", "n": 9223372036854775807},
        "D-4": {"sku": "D-4", "n": -9223372036854775808},
    }


@both_paths
def test_a_required_int_left_blank_is_still_missing(alice, csv_server):
    body = "sku,n\nA-1,\nB-2,1\n"
    imp = make_import(
        alice,
        csv_server.serve("/p.csv", body),
        columns=[{"name": "n", "type": "int", "required": True}],
    )

    run = run_now(imp)

    assert row_errors(run) == [(2, "n", "a required value is missing")]
