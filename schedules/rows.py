"""Model rows in statements written once, for the few reads a run makes on its hot path.

The ORM compiles a queryset again every time it runs: reading a run with its import and
dataset cost 1.7 ms of Python for a statement PostgreSQL answers in a tenth of that, and a
100-row run sent a dozen such statements (issue 15, tests/bench/bench_small_runs.py). The
statements that use this module name their columns from the models' own field lists, built
once per process, so a field added to a model is read with no change here; the rows become
instances through `Model.from_db` with the fields' own converters, exactly as the ORM's would.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import DEFERRED, Field, Model
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

M = TypeVar("M", bound=Model)

# The largest id a row can have: every id is a bigint (DEFAULT_AUTO_FIELD is BigAutoField). A
# larger number from a request (a path, a filter, a cursor) names nothing; passed to PostgreSQL
# it would fail the statement ("out of range for type bigint"), a 500 instead of a 404 or 400.
MAX_ID = 2**63 - 1


@cache
def _fields(
    model: type[Model], only: tuple[str, ...] | None = None
) -> tuple[list[str], list[str], list[tuple[int, Callable, Field]], list[int]]:
    """attnames, quoted columns, (position, converter, field) for fields the database gives raw,
    and each field's position among the model's concrete fields: of every concrete field, or of
    the primary key and those `only` names (names or attnames), in the model's order, which is
    the order `Model.from_db` reads."""
    every = model._meta.concrete_fields
    positions = [
        position
        for position, field in enumerate(every)
        if only is None or field.primary_key or field.name in only or field.attname in only
    ]
    fields = [every[position] for position in positions]
    quote = connection.ops.quote_name
    converters = [
        (index, converter, field)
        for index, field in enumerate(fields)
        for converter in field.get_db_converters(connection)
    ]
    return [f.attname for f in fields], [quote(f.column) for f in fields], converters, positions


class LoadedHook:
    """A model whose making from the database needs one step more than its values: `loaded()`,
    which `from_db` calls on the instance it made. `instance` makes such a model its short way
    too, then calls the same `loaded()` (a model's own `from_db` could do anything, and sends
    the model the long way)."""

    @classmethod
    def from_db(cls, db: str | None, field_names: Sequence[str], values: Sequence[Any]) -> Any:
        return super().from_db(db, field_names, values).loaded()  # type: ignore[misc]

    def loaded(self) -> Any:
        return self


# What a concrete field's attribute on its class may be for `Model.__init__` to store its value
# in the instance's __dict__ and nothing else (a foreign key's forgets a cached object that a
# new instance does not have).
_PLAIN_ATTRIBUTES = (DeferredAttribute, ForeignKeyDeferredAttribute)


@cache
def _made_by_init_alone(model: type[Model]) -> bool:
    """True when `Model.from_db` makes an instance of `model` by storing its values and a fresh
    state and nothing else (then its `loaded()`, for a LoadedHook): no from_db or __init__ of
    its own, no pre_init or post_init receiver
    (receivers connect when the apps load, before any request), no field attribute that stores
    its value itself (a file's)."""
    return (
        model.from_db.__func__ in (Model.from_db.__func__, LoadedHook.from_db.__func__)
        and model.__init__ is Model.__init__
        and not pre_init.has_listeners(model)
        and not post_init.has_listeners(model)
        and all(
            type(inspect.getattr_static(model, field.attname)) in _PLAIN_ATTRIBUTES
            for field in model._meta.concrete_fields
        )
    )


def references_to(model: type[Model]) -> list[Any]:
    """The relations of other models (and of `model` itself) that point at `model`, hidden ones
    (`related_name="+"`) included: what a deletion of its rows must clear, keep or follow."""
    return [
        relation
        for relation in model._meta.get_fields(include_hidden=True)
        if relation.auto_created
        and not relation.concrete
        and (relation.one_to_many or relation.one_to_one)
    ]


def literals(values: Sequence[str]) -> str:
    """`'a', 'b'`: fixed values written into a statement (statuses), so that a partial index
    whose predicate names them applies."""
    return ", ".join(f"'{value}'" for value in values)


def column(model: type[Model], field_name: str) -> str:
    """The quoted column of `field_name` (the user model's username, say)."""
    return connection.ops.quote_name(model._meta.get_field(field_name).column)


def columns(model: type[Model], alias: str, only: tuple[str, ...] | None = None) -> str:
    """Every column of `model` under the table alias `alias`, in the order `instances` reads;
    with `only`, the primary key's and those of the fields it names, as `QuerySet.only()`
    selects them."""
    return ", ".join(f"{alias}.{column}" for column in _fields(model, only)[1])


def width(model: type[Model], only: tuple[str, ...] | None = None) -> int:
    """How many columns `columns(model, alias, only)` selects."""
    return len(_fields(model, only)[0])


def instances(row: Sequence[Any], *models: type[Model]) -> list[Model]:
    """The instances one row of `columns(m1, ..), columns(m2, ..)` holds, in that order."""
    found, start = [], 0
    for model in models:
        end = start + width(model)
        found.append(instance(row[start:end], model))
        start = end
    return found


def instance(values: Sequence[Any], model: type[M], only: tuple[str, ...] | None = None) -> M:
    """The instance of `model` that the values of `columns(model, alias, only)` make, with the
    fields' own converters, as `Model.from_db` makes it; the fields `only` leaves out are
    deferred, as `QuerySet.only()` leaves them (read from the database if anything asks).

    A page of a list makes a hundred of them: where the model allows (`_made_by_init_alone`),
    the instance is its values and its state, which is all `Model.__init__` would make of them
    after looking up each field again (two fifths of a page's reading)."""
    names, _, converters, positions = _fields(model, only)
    values = list(values)
    if converters:
        db = connections[DEFAULT_DB_ALIAS]
        for index, converter, field in converters:
            values[index] = converter(values[index], field.cached_col, db)
    if _made_by_init_alone(model):
        made = model.__new__(model)
        state = made._state = ModelState()
        state.adding, state.db = False, DEFAULT_DB_ALIAS
        made.__dict__.update(zip(names, values, strict=True))
        return made.loaded() if isinstance(made, LoadedHook) else made
    if only is not None:
        # Every field in place, the deferred ones marked, so from_db need not look for them.
        placed = [DEFERRED] * len(model._meta.concrete_fields)
        for position, value in zip(positions, values, strict=True):
            placed[position] = value
        values = placed
    return model.from_db(DEFAULT_DB_ALIAS, names, values)


def refresh(instance: M, row: Sequence[Any]) -> M:
    """`instance` with every field as `row` (from `columns`) has it, as refresh_from_db would."""
    fresh = instances(row, type(instance))[0]
    for name in _fields(type(instance))[0]:
        setattr(instance, name, getattr(fresh, name))
    return instance


def update(model: type[Model], pk: int, values: dict[str, Any], condition: str = "") -> int:
    """Set these fields (names or attnames) of the row `pk`, when `condition` (SQL on its
    columns, no parameters) holds; the number of rows changed, 0 or 1.

    Values are prepared by their fields (a JSON field's, a date's), as the ORM's `update()`.
    """
    statement = _update_sql(model, tuple(values), condition)
    fields = model._meta
    db = connections[DEFAULT_DB_ALIAS]
    params = [fields.get_field(name).get_db_prep_save(value, db) for name, value in values.items()]
    with db.cursor() as cursor:
        cursor.execute(statement, [*params, pk])
        return cursor.rowcount


@cache
def _update_sql(model: type[Model], names: tuple[str, ...], condition: str) -> str:
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(model._meta.get_field(n).column)} = %s" for n in names)
    where = f" AND ({condition})" if condition else ""
    return f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE id = %s{where}"


def insert_where(instance: Model, condition: str, params: Sequence[Any] = ()) -> bool:
    """Insert `instance` as a new row when `condition` (SQL, with `params`) holds, and give it
    its primary key; False, and nothing written, when it does not.

    One statement, so the condition is checked and the row written from the same snapshot.
    Values are prepared by their fields, defaults and `auto_now_add` included, as the ORM's
    `save()` would; no model signal is sent (the models written this way have no receiver).
    """
    model = type(instance)
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    db = connections[DEFAULT_DB_ALIAS]
    values = [field.get_db_prep_save(field.pre_save(instance, True), db) for field in fields]
    with db.cursor() as cursor:
        cursor.execute(_insert_sql(model, condition), [*values, *params])
        row = cursor.fetchone()
    if row is None:
        return False
    instance.pk = row[0]
    instance._state.adding = False
    instance._state.db = DEFAULT_DB_ALIAS
    return True


def insert(instance: Model) -> None:
    """Insert `instance` as a new row and give it its primary key, as `save()` would, without
    compiling the statement (`insert_where` with no condition)."""
    insert_where(instance, "TRUE")


@cache
def _insert_sql(model: type[Model], condition: str) -> str:
    quote = connection.ops.quote_name
    fields = [field for field in model._meta.concrete_fields if not field.primary_key]
    names = ", ".join(quote(field.column) for field in fields)
    placeholders = ", ".join("%s" for _ in fields)
    return (
        f"INSERT INTO {quote(model._meta.db_table)} ({names}) SELECT {placeholders}"
        f" WHERE {condition} RETURNING {quote(model._meta.pk.column)}"
    )


def get(model: type[M], pk: int) -> M | None:
    """The row `pk` of `model` as an instance, or None: `Model.objects.filter(pk=pk).first()`
    without compiling it."""
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute(_get_sql(model), [pk])
        row = cursor.fetchone()
    return None if row is None else instances(row, model)[0]


@cache
def _get_sql(model: type[Model]) -> str:
    quote = connection.ops.quote_name
    return (
        f"SELECT {columns(model, 't')} FROM {quote(model._meta.db_table)} t"
        f" WHERE t.{quote(model._meta.pk.column)} = %s"
    )
