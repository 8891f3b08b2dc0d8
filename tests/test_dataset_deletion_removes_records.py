"""Records have no database foreign key to their dataset (its per-row check made a million-row
load 5.5 s slower); deleting a dataset must still delete its records, through Django's CASCADE.
"""

import pytest

from common import streaming
from schedules import services
from schedules.models import Dataset, Record

pytestmark = pytest.mark.django_db


def test_deleting_a_dataset_deletes_its_records_and_no_other(alice):
    # Given two datasets with records
    kept, dropped = (Dataset.objects.create(owner=alice, name=name) for name in ("kept", "gone"))
    for dataset in (kept, dropped):
        Record.objects.bulk_create(
            Record(dataset=dataset, key=f"k{i}", data={"n": i}, content_hash=i) for i in range(3)
        )

    # When one dataset is deleted
    dropped_id = dropped.pk
    dropped.delete()

    # Then its records went with it, and the other dataset's stayed
    assert not Record.objects.filter(dataset_id=dropped_id).exists()
    assert Record.objects.filter(dataset=kept).count() == 3


def test_a_datasets_records_are_deleted_a_range_at_a_time_telling_the_web_server_it_lives(
    alice, monkeypatch
):
    """One DELETE of 25 million records outlasted gunicorn's worker timeout: the worker was
    killed, the deletion rolled back, and the client got a 502 (services._delete_in_id_ranges)."""
    # Given two datasets whose records' ids interleave, and a web worker's heartbeat
    kept, dropped = (Dataset.objects.create(owner=alice, name=name) for name in ("kept", "gone"))
    Record.objects.bulk_create(
        Record(dataset=dataset, key=f"k{i}", data={"n": i}, content_hash=i)
        for i in range(7)
        for dataset in (kept, dropped)
    )
    beats: list[int] = []
    monkeypatch.setattr(streaming, "_notify", lambda: beats.append(Record.objects.count()))
    monkeypatch.setattr(streaming, "BEAT_INTERVAL_SECONDS", 0)
    monkeypatch.setattr(services, "RECORD_IDS_PER_DELETE", 4)

    # When one is deleted, four ids per statement (its 7 records span 13 ids: 4 statements)
    deleted = services.delete_dataset(dropped)

    # Then every one of its records went, a range at a time with a beat after each, and the
    # other dataset's stayed
    assert deleted == 7
    assert beats == [12, 10, 8, 7]
    assert not Dataset.objects.filter(name="gone").exists()
    assert sorted(Record.objects.values_list("key", flat=True)) == [f"k{i}" for i in range(7)]
    assert Record.objects.filter(dataset=kept).count() == 7


def test_records_chosen_by_hand_are_deleted_a_range_at_a_time_too(alice, monkeypatch):
    # Given a dataset of ten records, and a web worker's heartbeat
    dataset = Dataset.objects.create(owner=alice, name="products")
    Record.objects.bulk_create(
        Record(dataset=dataset, key=f"k{i}", data={"n": i}, content_hash=i) for i in range(10)
    )
    services.recount_records([dataset.pk])
    beats: list[int] = []
    monkeypatch.setattr(streaming, "_notify", lambda: beats.append(Record.objects.count()))
    monkeypatch.setattr(streaming, "BEAT_INTERVAL_SECONDS", 0)
    monkeypatch.setattr(services, "RECORD_IDS_PER_DELETE", 3)

    # When the admin deletes the even ones (their ids span three ranges of three)
    chosen = Record.objects.filter(data__n__in=[0, 2, 4, 6, 8]).order_by("-key")
    deleted = services.delete_records(chosen)

    # Then exactly those went, a range at a time, and the dataset's count follows
    assert deleted == 5 and beats == [8, 7, 5]
    assert sorted(Record.objects.values_list("data__n", flat=True)) == [1, 3, 5, 7, 9]
    dataset.refresh_from_db()
    assert dataset.record_count == 5
