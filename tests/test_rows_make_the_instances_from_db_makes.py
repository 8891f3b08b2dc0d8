"""A row read in a statement written once becomes the instance `Model.from_db` would make of it
(schedules.rows.instance): the same values, the same deferred fields, the same state, whether
it is made directly (a run, a user: two fifths less to make a page of runs) or, for a model
whose from_db does one step more (an import remembers its saved source: rows.LoadedHook), made
directly and then given that step."""

import pytest
from django.db import connection
from django.test.utils import isolate_apps

from schedules import rows
from schedules.models import ImportRun, ScheduledImport
from tests.api_support import SOURCE, make_run
from tests.factories import make_import

pytestmark = pytest.mark.django_db


def read(model, pk, only=None):
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {rows.columns(model, 't', only)} FROM {model._meta.db_table} t"
            " WHERE t.id = %s",
            [pk],
        )
        return cursor.fetchone()


def the_orms(model, pk, only=None):
    queryset = model.objects.filter(pk=pk)
    return (queryset if only is None else queryset.only(*only)).get()


def state(instance) -> tuple:
    return instance._state.adding, instance._state.db, instance._state.fields_cache


def values(instance) -> dict:
    return {k: v for k, v in vars(instance).items() if k != "_state"}


@pytest.mark.parametrize("only", [None, ("status", "scheduled_import_id", "retry_of")])
def test_a_run_is_made_as_from_db_makes_it(alice, only):
    # Given a run with a JSON column, times and a key to another run
    imp = make_import(alice, SOURCE)
    first = make_run(imp, "failed", error_details={"attempts": [{"error": "503"}]})
    run = make_run(imp, "succeeded", retry_of=first, bytes_total=10)

    # When it is made from its row, and read by the ORM
    ours = rows.instance(read(ImportRun, run.pk, only), ImportRun, only)
    theirs = the_orms(ImportRun, run.pk, only)

    # Then both hold the same
    assert rows._made_by_init_alone(ImportRun)
    assert values(ours) == values(theirs) and state(ours) == state(theirs) == (False, "default", {})
    assert ours.get_deferred_fields() == theirs.get_deferred_fields()
    assert (ours.get_deferred_fields() == set()) is (only is None)
    assert ours == theirs and ours.retry_of == first


def test_a_users_name_alone_defers_the_rest(alice):
    ours = rows.instance(read(type(alice), alice.pk, ("username",)), type(alice), ("username",))

    assert values(ours) == {"id": alice.pk, "username": "alice"}
    theirs = the_orms(type(alice), alice.pk, ("username",))
    assert ours.get_deferred_fields() == theirs.get_deferred_fields()
    assert ours.email == alice.email  # read from the database, as a deferred field is


@pytest.mark.parametrize("only", [None, ("name",)])
def test_an_import_is_made_directly_then_loaded_as_its_from_db_does(alice, only):
    imp = make_import(alice, SOURCE)

    ours = rows.instance(read(ScheduledImport, imp.pk, only), ScheduledImport, only)
    theirs = the_orms(ScheduledImport, imp.pk, only)

    assert rows._made_by_init_alone(ScheduledImport)
    assert values(ours) == values(theirs) and state(ours) == state(theirs)
    assert ours.get_deferred_fields() == theirs.get_deferred_fields()
    assert ("_saved_values" in vars(ours)) and ours._saved_values["source_url"] == (
        SOURCE if only is None else None
    )


@isolate_apps("schedules")
def test_a_model_with_a_from_db_of_its_own_is_made_by_it():
    # Whatever a model's own from_db does is unknown to rows: such a model goes the long way.
    class OwnFromDb(ScheduledImport):
        class Meta:
            proxy = True
            app_label = "schedules"

        @classmethod
        def from_db(cls, db, field_names, values):
            return super().from_db(db, field_names, values)

    assert not rows._made_by_init_alone(OwnFromDb)
    assert rows._made_by_init_alone(ScheduledImport)
