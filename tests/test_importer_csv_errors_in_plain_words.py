"""A file the csv module cannot read fails in plain words: what is wrong in the file, and where.

Regression: the run's message carried Python's own text: "the file is not a valid CSV near
line 3: ',' expected after '\"'", "field larger than field limit (131072)", "new-line character
seen in unquoted field - do you need to open the file in universal-newline mode?". Those are
the csv module's words for a programmer; the original text now goes to the worker's log.
"""

import csv
import logging
import re

import pytest

from tasks import source_check
from tasks.engine import csv_reading
from tests.factories import make_import
from tests.importer_support import both_paths, run_now, staging_path  # noqa: F401

pytestmark = pytest.mark.django_db

# Every csv.Error message CPython 3.11's Modules/_csv.c can raise (its format strings, filled
# in as they would be), with what the run's message says of it. The reader's own first; then
# one Python 3.10 and before raised (3.11 reads NUL, and the importer refuses NUL bytes itself,
# test_importer_not_csv.py) and 3.12's wording of the line-break one; then those that cannot
# come from reading a file (writing, the dialect registry, an iterator of bytes), which read the
# generic sentence. Line 7 is where the parser was, line 5 where its row started.
CSV_ERRORS = [
    ("field larger than field limit (131072)",
     "a field on line 7 is longer than the largest allowed (131,072 characters)"),
    ("field larger than field limit (1000)",
     "a field on line 7 is longer than the largest allowed (1,000 characters)"),
    ("',' expected after '\"'",
     "on line 7, a quoted field goes on after its closing quote ('\"') instead of ending with "
     "',' or the end of the line; a quote inside a quoted field is written twice"),
    ("'\t' expected after '\"'",
     "on line 7, a quoted field goes on after its closing quote ('\"') instead of ending with "
     "a tab or the end of the line; a quote inside a quoted field is written twice"),
    ("new-line character seen in unquoted field - do you need to open the file in "
     "universal-newline mode?",
     "line 7 has a line break inside a field that is not quoted; a field that holds line "
     "breaks must be in quotes"),
    ("unexpected end of data",
     "the file ends inside a quoted field: a quote opened in the row starting on line 5 is "
     "never closed"),
    ("line contains NUL", "the file contains a NUL character on line 7: binary data, not text"),
    ("line contains NULL byte",
     "the file contains a NUL character on line 7: binary data, not text"),
    ("new-line character seen in unquoted field - do you need to open the file with "
     "newline=''?",
     "line 7 has a line break inside a field that is not quoted; a field that holds line "
     "breaks must be in quotes"),
    ("iterator should return strings, not bytes (the file should be opened in text mode)",
     "the CSV reader could not make sense of line 7"),
    ("unknown dialect", "the CSV reader could not make sense of line 7"),
    ("need to escape, but no escapechar set", "the CSV reader could not make sense of line 7"),
    ("single empty field record must be quoted",
     "the CSV reader could not make sense of line 7"),
    ("iterable expected, not int", "the CSV reader could not make sense of line 7"),
]  # fmt: skip
GENERIC = "the CSV reader could not make sense of line 7"
TOO_LONG = (
    "the file is not a valid CSV: a field on line 1 is longer than the largest allowed "
    "(1,000 characters)"
)
# A library's name for things: a CamelCase word (FieldLimitError, csv.Error's class, ...).
CLASS_NAME = re.compile(r"\b[A-Z][a-z]+[A-Z]\w*\b")


def assert_plain(message: str) -> None:
    assert not CLASS_NAME.search(message), message
    assert "Error" not in message, message
    for python_words in ("field limit", "expected after", "new-line", "unexpected end", "NULL"):
        assert python_words not in message, message


@pytest.mark.parametrize(("original", "said"), CSV_ERRORS)
def test_each_message_the_csv_module_raises_reads_in_plain_words(original, said, caplog):
    with caplog.at_level(logging.INFO, logger="importbeat.importer"):
        assert csv_reading.plain(csv.Error(original), line=7, row_line=5) == said

    assert_plain(said)
    assert original in caplog.text


def test_a_message_not_known_here_is_logged_as_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="importbeat.importer"):
        said = csv_reading.plain(csv.Error("something new in Python 3.14"), line=7)

    assert said == GENERIC
    assert "something new in Python 3.14" in caplog.text


@both_paths
def test_text_after_a_closing_quote_names_its_line(alice, csv_server):
    # Given a row of the wrong width, which sends the COPY path to the csv module too, then
    # a field with text after its closing quote
    body = 'sku,name\nA-1,Anvil,extra\nB-2,Bucket\nC-3,"Crate" large\n'
    imp = make_import(alice, csv_server.serve("/p.csv", body))

    run = run_now(imp)

    assert run.status == "failed"
    assert run.error_message == (
        "the file is not a valid CSV: on line 4, a quoted field goes on after its closing "
        "quote ('\"') instead of ending with ',' or the end of the line; a quote inside a "
        "quoted field is written twice"
    )
    assert_plain(run.error_message)


@pytest.fixture
def small_fields(settings):
    settings.MAX_FIELD_BYTES = 1000


def a_long_header() -> str:
    # The whole file is in what the importer reads before it parses the first record (256 KiB)
    # and in what Test source reads (64 KiB): the first record's end is found, its field is
    # over the limit.
    return "sku," + "n" * 2000 + "\nA-1,x\n"


@both_paths
def test_a_field_over_the_limit_in_the_first_record_names_the_limit(
    alice, csv_server, small_fields
):
    imp = make_import(alice, csv_server.serve("/p.csv", a_long_header()))

    run = run_now(imp)

    assert run.status == "failed"
    assert run.error_message == TOO_LONG
    assert_plain(run.error_message)


def test_test_source_says_it_in_the_same_words(alice, csv_server, small_fields):
    imp = make_import(alice, csv_server.serve("/p.csv", a_long_header()))

    checked = source_check.check_source(imp.pk)

    assert checked["problems"] == [TOO_LONG]


@pytest.fixture
def fresh_process():
    """The csv module's limit as a process that has not imported a file yet has it (128 KiB):
    the limit is process-wide, and only the Python path used to set it."""
    before = csv.field_size_limit(128 * 1024)
    yield
    csv.field_size_limit(before)


@both_paths
def test_a_first_record_with_a_field_over_128_kib_reads_in_a_fresh_process(
    alice, csv_server, fresh_process
):
    # Given a header whose second name is 200 000 characters long (under MAX_FIELD_BYTES),
    # which failed with "field larger than field limit (131072)"
    imp = make_import(alice, csv_server.serve("/p.csv", "sku," + "n" * 200_000 + "\nA-1,x\n"))

    run = run_now(imp)

    assert (run.status, run.rows_inserted) == ("succeeded", 1), run.error_message


def test_test_source_names_a_spec_column_the_header_does_not_have(alice, csv_server):
    # A typo in the spec (`prise`): every run leaves `price` untyped, and nothing says so
    url = csv_server.serve("/p.csv", "sku,price\nA-1,9.50\n")
    imp = make_import(alice, url, columns=[{"name": "prise", "type": "decimal"}])

    checked = source_check.check_source(imp.pk)

    assert checked["ok"] is False
    assert checked["problems"] == [
        "the columns spec names 'prise', which the file's header does not have (sku, price): "
        "its type and rules would apply to no column; correct the name in the spec, or remove it"
    ]


def test_a_run_fails_on_a_spec_column_the_header_does_not_have(alice, csv_server):
    # It used to succeed, `price` landing untyped and unchecked, every run, without a word
    url = csv_server.serve("/p.csv", "sku,price\nA-1,9.50\nA-2,not a price\n")
    imp = make_import(alice, url, columns=[{"name": "prise", "type": "decimal"}])

    run = run_now(imp)

    assert (run.status, run.attempts, run.rows_inserted) == ("failed", 1, 0)
    assert run.error_message == (
        "the columns spec names 'prise', which the file's header does not have (sku, price): "
        "its type and rules would apply to no column; correct the name in the spec, or remove it"
    )


def test_a_spec_without_a_header_names_the_columns_in_order(alice, csv_server):
    # No header: the spec is the header, so none of its columns can be absent
    url = csv_server.serve("/p.csv", "A-1,9.50\n")
    spec = [{"name": "sku", "type": "text"}, {"name": "price", "type": "decimal"}]
    imp = make_import(alice, url, columns=spec, has_header=False)

    run = run_now(imp)

    assert (run.status, run.rows_inserted) == ("succeeded", 1), run.error_message
