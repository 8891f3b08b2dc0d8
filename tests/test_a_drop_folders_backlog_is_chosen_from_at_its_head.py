"""A queue of deliveries (a drop folder's glob with move_processed) chooses its next delivery
at the head of the backlog: a worker keeps each queue's order (tasks.drop_folder._Queue), and a
choice lists the folder's names, looks at the files new since and at a few at the head, and asks
the database about those few.

Regression (drops hunt, bug 1): each choice looked at every file waiting (a stat, the resolved
path and the version of each), ordered them all anew and asked about all their versions in one
query; a drain chooses twice per file, so 300 files drained in under a minute, 10,000 in 1.8 h
and 40,000 in about a day. The order stays as it was: the oldest modification time first, then
names in their numbers' order (common.globs.delivery_order), files imported before passed over.
"""

from __future__ import annotations

import os
import random
import time

from common import globs
from schedules import drop_folders
from tasks import drop_folder
from tasks.drop_folder import next_delivery
from tasks.source_options import SourceOptions
from tests.drop_support import put

BACKLOG = 2000


class Imported:
    """A fake of processed_files.imported_before: the versions in `versions` were imported;
    each question's size is kept."""

    def __init__(self) -> None:
        self.versions: set[str] = set()
        self.asked: list[int] = []

    def __call__(self, etags: list[str]) -> set[str]:
        self.asked.append(len(etags))
        return self.versions & set(etags)


def version_of(path) -> str:
    return drop_folders.file_etag(os.path.realpath(path), os.stat(path))


def counting_versions(monkeypatch) -> list[str]:
    """The paths whose version (drop_folders.file_etag) is worked out from now on."""
    worked_out: list[str] = []
    etag = drop_folders.file_etag

    def counted(real_path: str, info: os.stat_result) -> str:
        worked_out.append(real_path)
        return etag(real_path, info)

    monkeypatch.setattr(drop_folders, "file_etag", counted)
    return worked_out


def test_a_choice_in_a_large_backlog_looks_at_a_few_files_at_its_head(drop, monkeypatch):
    # Given a backlog of 2,000 deliveries, of which the oldest was just taken
    now = time.time()
    for n in range(BACKLOG):
        put(drop / f"products_{n:05d}.csv", f"delivery {n}\n", mtime=now - 10_000 + n)
    url = f"file://{drop}/products_*.csv"
    imported = Imported()
    assert next_delivery(url, imported) == str(drop / "products_00000.csv")
    (drop / "products_00000.csv").unlink()

    # When the next delivery is chosen, for the drain and for the run that takes it
    worked_out, imported.asked = counting_versions(monkeypatch), []
    chosen = next_delivery(url, imported)
    opened = drop_folder.open_file(
        url, options=SourceOptions(imported_before=imported, whole=False)
    )
    with opened as (stream, _size):
        taken = stream.source_file

    # Then both take the next one, each having worked out the versions of a few files at the
    # head and asked about those alone (on the old code: 1,999 each, all in one question)
    assert chosen == taken == str(drop / "products_00001.csv")
    assert len(worked_out) <= 20, len(worked_out)
    assert imported.asked and max(imported.asked) <= 8, imported.asked


def test_deliveries_imported_before_at_the_head_are_passed_over_however_many(drop):
    # Given 30 deliveries that could not be filed away once imported, then two waiting
    now = time.time()
    for n in range(32):
        put(drop / f"products_{n}.csv", f"delivery {n}\n", mtime=now - 1000 + n)
    url = f"file://{drop}/products_*.csv"
    imported = Imported()
    imported.versions = {version_of(drop / f"products_{n}.csv") for n in range(30)}

    # Then the first one not imported is chosen, asked about a few more files at a time
    assert next_delivery(url, imported) == str(drop / "products_30.csv")
    assert imported.asked == [8, 24], imported.asked
    imported.versions.add(version_of(drop / "products_30.csv"))
    assert next_delivery(url, imported) == str(drop / "products_31.csv")
    imported.versions.add(version_of(drop / "products_31.csv"))
    assert next_delivery(url, imported) is None


def test_the_head_follows_what_arrived_went_or_was_written_again_between_two_choices(drop):
    now = time.time()
    for n in range(1, 5):
        put(drop / f"products_{n}.csv", f"delivery {n}\n", mtime=now - 1000 + n)
    url = f"file://{drop}/products_*.csv"
    imported = Imported()
    assert next_delivery(url, imported) == str(drop / "products_1.csv")

    # A delivery copied in with its old time (rsync -t) goes ahead of those waiting
    put(drop / "products_0.csv", "delivery 0\n", mtime=now - 2000)
    assert next_delivery(url, imported) == str(drop / "products_0.csv")

    # One taken away by someone else is not chosen
    (drop / "products_0.csv").unlink()
    (drop / "products_1.csv").unlink()
    assert next_delivery(url, imported) == str(drop / "products_2.csv")

    # The head written again in place (its inode kept) goes behind the others
    put(drop / "products_2.csv", "delivery 2, again\n", mtime=now - 10)
    assert next_delivery(url, imported) == str(drop / "products_3.csv")

    # One behind it given an older time in place (touch -d) comes to the head
    os.utime(drop / "products_4.csv", (now - 5000, now - 5000))
    assert next_delivery(url, imported) == str(drop / "products_4.csv")

    # One replaced by a new file (another inode) with an older time too
    put(drop / "products_new.csv", "delivery 5\n", mtime=now - 9000)
    os.replace(drop / "products_new.csv", drop / "products_2.csv")
    assert next_delivery(url, imported) == str(drop / "products_2.csv")


def test_files_of_one_moment_stay_in_their_numbers_order_as_the_backlog_drains(drop):
    # More than a few at once arrive and go (the order is kept in bulk then)
    moment = time.time() - 3600
    for n in range(100):
        put(drop / f"products_{n}.csv", f"delivery {n}\n", mtime=moment)
    url = f"file://{drop}/products_*.csv"
    imported = Imported()
    taken = []
    for round_ in range(3):
        for _ in range(40):
            chosen = next_delivery(url, imported)
            taken.append(os.path.basename(chosen))
            os.unlink(chosen)
        for n in range(100 + 40 * round_, 140 + 40 * round_):
            put(drop / f"products_{n}.csv", f"delivery {n}\n", mtime=moment)

    expected = sorted((f"products_{n}.csv" for n in range(220)), key=globs.delivery_order)
    assert taken == expected[:120]


def test_every_choice_is_the_one_a_look_at_every_file_makes(drop):
    # Deliveries arrive (some with older times than those waiting), are taken, are imported
    # and left there, are written again in place with a newer time or replaced by another file
    # with any time, or many go at once; after each, the choice is the one of a look at every
    # file (the old way)
    dice = random.Random(20261206)
    now = int(time.time()) - 100_000
    url = f"file://{drop}/products_*.csv"
    imported = Imported()
    names = iter(range(1_000_000))

    def deliver(moment: int) -> None:
        put(drop / f"products_{next(names)}.csv", f"{dice.random()}\n", mtime=moment)

    def looked_at_all() -> str | None:
        files = [entry for entry in os.scandir(drop) if globs.matches(entry.name, "products_*.csv")]
        order = sorted(files, key=lambda e: (e.stat().st_mtime_ns, globs.delivery_order(e.name)))
        waiting = [e.path for e in order if version_of(e.path) not in imported.versions]
        return waiting[0] if waiting else None

    for _ in range(60):
        deliver(now + dice.randrange(0, 600, 30))
    for step in range(400):
        files = sorted(p for p in os.listdir(drop) if p.startswith("products_"))
        action = dice.choice(("deliver", "take", "take", "keep", "newer", "replace", "many"))
        if action == "deliver" or not files:
            deliver(now + dice.randrange(0, 900, 30))
        elif action == "many":
            for _ in range(40):
                deliver(now + dice.randrange(0, 900, 30))
            for name in dice.sample(files, min(len(files), 35)):
                os.unlink(drop / name)
        elif action == "take":
            chosen = next_delivery(url, imported)
            if chosen is not None:
                os.unlink(chosen)
        elif action == "keep":
            chosen = next_delivery(url, imported)
            if chosen is not None:
                imported.versions.add(version_of(chosen))
        elif action == "newer":
            path = drop / dice.choice(files)
            moment = os.stat(path).st_mtime + dice.randrange(30, 300, 30)
            with open(path, "a") as file:
                file.write("more\n")
            os.utime(path, (moment, moment))
        else:
            put(drop / "incoming.tmp", f"{dice.random()}\n", mtime=now + dice.randrange(0, 900, 30))
            os.replace(drop / "incoming.tmp", drop / dice.choice(files))
        assert next_delivery(url, imported) == looked_at_all(), (step, action)
