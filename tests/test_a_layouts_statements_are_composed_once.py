"""The statements that depend only on a file's layout (its staging table, its COPY, its checks,
its rows' JSON) are composed once per layout in a process, not at every run (issue 15:
composing and rendering them was 0.3 ms of a 100-row run's 8 ms of CPU); a file of another
layout, or an import whose columns spec changed, gets statements of its own."""

from collections import Counter, OrderedDict

import pytest

from tasks.engine import merge, stage, stage_copy, tables, validate
from tests.factories import make_import
from tests.importer_support import records, run_now

pytestmark = pytest.mark.django_db(transaction=True)

COMPOSERS = (
    (stage, "create_raw_table"),
    (stage_copy, "copy_raw_csv"),
    (validate, "find_bad_rows"),
    (merge, "row_json"),
)


@pytest.fixture
def composed(monkeypatch) -> Counter:
    """How often each of the layout's statements was composed (none kept from another test)."""
    monkeypatch.setattr(tables, "_rendered", OrderedDict(), raising=False)
    calls: Counter = Counter()
    for module, name in COMPOSERS:
        original = getattr(module, name)

        def counting(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(module, name, counting)
    return calls


def test_a_second_import_of_the_same_layout_composes_none_of_them(alice, csv_server, composed):
    # Given an import of a file with a layout not seen before, which ran once
    first = make_import(alice, csv_server.serve("/a.csv", "code,label\nA,one\n"), name="a",
                        dataset="a", key_column="code")  # fmt: skip
    run_now(first)
    assert composed == {name: 1 for _, name in COMPOSERS}

    # When another import of a file with the same layout runs
    second = make_import(alice, csv_server.serve("/b.csv", "code,label\nB,two\nC,three\n"),
                         name="b", dataset="b", key_column="code")  # fmt: skip
    run = run_now(second)

    # Then its rows land as the statements composed for the first one say, composing nothing
    assert (run.status, run.rows_inserted) == ("succeeded", 2)
    assert records(second) == {"B": {"code": "B", "label": "two"},
                               "C": {"code": "C", "label": "three"}}  # fmt: skip
    assert composed == {name: 1 for _, name in COMPOSERS}


def test_another_layout_or_a_changed_spec_gets_statements_of_its_own(alice, csv_server, composed):
    # Given an import that ran with untyped columns
    imp = make_import(alice, csv_server.serve("/a.csv", "code,qty\nA,7\n"), key_column="code")
    run_now(imp)

    # When its columns spec makes `qty` an int, and then its file gains a column
    imp.columns = [{"name": "qty", "type": "int", "required": True}]
    imp.save()
    typed = run_now(imp)
    csv_server.serve("/a.csv", "code,qty,note\nA,8,x\n")
    wider = run_now(imp)

    # Then each run used its own layout's statements: a JSON number once typed, the new column
    assert (typed.status, wider.status) == ("succeeded", "succeeded")
    assert records(imp) == {"A": {"code": "A", "qty": 8, "note": "x"}}
    assert composed["row_json"] == 3
    assert composed["find_bad_rows"] == 3
