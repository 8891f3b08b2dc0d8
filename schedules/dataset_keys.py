"""A dataset's records are keyed by one column.

An import upserts its rows by its key column. Pointed at a dataset whose records were keyed by
another column (its key column changed, or a second import keyed otherwise writes to the same
dataset), every row landed as a new record beside the one it meant to update: the dataset held
each row twice, and every run said `succeeded`. The dataset now notes the column its records are
keyed by (`Dataset.key_column`, written by every merge); saving such an import is refused with
these words, and a merge that meets it anyway (an edit while a run ran) fails without writing.
Mode `sync` may change a dataset's key: its next run replaces every record.
"""

from __future__ import annotations

# What a key is trimmed of as it lands (the importer's btrim, tasks.engine.tables.WHITESPACE) and
# as it is looked for (`?key=`): not Python's whitespace, which takes more.
KEY_WHITESPACE = " \t\r\n"


def as_kept(key: str) -> str:
    """`key` as a record keeps it: the importer trims every key it lands."""
    return key.strip(KEY_WHITESPACE)


def conflicts(keyed_by: str, records: int, key_column: str, mode: str) -> bool:
    """Whether an import keyed by `key_column` in `mode` would add its rows beside a dataset's
    `records` keyed by `keyed_by`."""
    return mode == "upsert" and bool(keyed_by) and records > 0 and keyed_by != key_column


def conflict(dataset: str, keyed_by: str, records: int, key_column: str) -> str:
    """Why an import keyed by `key_column` cannot add to `dataset` (`conflicts`)."""
    return (
        f"dataset {dataset!r} holds {records:,} record(s) keyed by {keyed_by!r}: rows keyed by "
        f"{key_column!r} would land beside them, each row twice; keep the key column "
        f"{keyed_by!r}, write to another dataset, or use mode sync, whose next run replaces "
        "every record"
    )


def shared_with_sync(dataset: str, mode: str, others: list[tuple[str, str]]) -> str:
    """Why an import in `mode` cannot write to `dataset` beside the imports `others` ((name,
    mode) each), '' when it can: a sync import deletes every record its file lacks, so beside
    another writer each run deleted what the other had written, and every run said
    `succeeded`."""
    if not others:
        return ""
    if mode == "sync":
        names = ", ".join(repr(name) for name, _mode in others[:5])
        return (
            f"dataset {dataset!r} is written by {names} too: a sync import deletes every record "
            "its file lacks, theirs included, at each run; write to a dataset of its own, or use "
            "mode upsert"
        )
    if syncing := [name for name, other_mode in others if other_mode == "sync"]:
        return (
            f"dataset {dataset!r} is written by the sync import {syncing[0]!r}, which deletes "
            "every record its file lacks, this import's included, at each run; write to a "
            "dataset of its own"
        )
    return ""
