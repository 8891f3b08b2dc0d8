"""Records have no database foreign key to their dataset (its per-row check made a million-row
load 5.5 s slower); deleting a dataset must still delete its records, through Django's CASCADE.
"""

import pytest

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
