"""The API's serializers read each shown field directly where the model says it is a plain
column (schedules.api.serializers.reader), from fields built once per process
(shared_readers), and show times without DRF's checks of each (DateTimeField): every answer
stays exactly what Django REST framework's own `to_representation` makes of the same rows,
field by field, None for None."""

from datetime import timedelta

import pytest
from django.utils import timezone

from schedules.api import serializers as api_serializers
from schedules.models import Dataset, NotificationDelivery, Record
from tests.api_support import API, SOURCE, client_for, make_run
from tests.factories import make_import
from tests.sftp_support import encryption_key  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


def test_every_answer_is_what_drf_would_show(alice, bob, encryption_key, monkeypatch):  # noqa: F811
    # Given an import with a credential, columns, notifications and runs of every kind
    imp = make_import(
        alice,
        SOURCE,
        columns=[{"name": "sku", "type": "text", "required": True}],
        credential={"kind": "bearer", "token": "s3cret"},
        callback_url="https://hooks.example.com/importbeat",
        notify_on=["failed", "late"],
    )
    paused = make_import(
        alice,
        SOURCE,
        name="paused one",
        schedule_type="cron",
        cron_expression="30 2 * * 1-5",
        timezone="Europe/Berlin",
    )
    paused.status = "paused"
    paused.save(update_fields=["status"])
    failed = make_run(
        imp,
        "failed",
        error_message="The source answered HTTP 503.",
        error_details={"attempts": [{"error": "503"}], "traceback": "Traceback"},
    )
    make_run(
        imp,
        "succeeded",
        trigger="manual",
        triggered_by=alice,
        retry_of=failed,
        queued_at=timezone.now() - timedelta(hours=1),
        rows_read=3,
        file_digest="ab" * 32,
    )
    make_run(imp, "running", bytes_read=5, bytes_total=10, attempts=1)
    make_run(paused, "queued")
    dataset = Dataset.objects.get(owner=alice, name="products")
    Record.objects.create(
        dataset=dataset,
        key="A-1",
        data={"sku": "A-1"},
        content_hash=-7,
        first_seen_run=failed,
        last_changed_run=None,
    )
    NotificationDelivery.objects.create(
        scheduled_import=imp, run=failed, event="failed", channel="email", target="a@x.org"
    )
    client = client_for(alice)
    paths = [
        f"{API}/imports/",
        f"{API}/imports/{imp.pk}/",
        f"{API}/imports/{paused.pk}/",
        f"{API}/runs/",
        f"{API}/runs/{failed.pk}/",
        f"{API}/imports/{imp.pk}/runs/",
        f"{API}/imports/{imp.pk}/deliveries/",
        f"{API}/datasets/",
        f"{API}/datasets/products/records/",
        f"{API}/me",
    ]

    # When each is read through our serializers, then through DRF's own representation
    ours = [client.get(path) for path in paths]
    monkeypatch.delattr(api_serializers.ModelSerializer, "to_representation")
    monkeypatch.delattr(api_serializers.DateTimeField, "to_representation")
    drfs = [client.get(path) for path in paths]

    # Then every answer is the same, byte for byte
    for path, mine, theirs in zip(paths, ours, drfs, strict=True):
        assert mine.status_code == theirs.status_code == 200, (path, mine.content[:300])
        assert mine.json() == theirs.json(), path
        assert mine.content == theirs.content, path
    assert ours[0].json()["results"][0]["credential"]["set"] is True
    assert ours[4].json()["triggered_by"] is None
    assert [run["triggered_by"] for run in ours[3].json()["results"]].count("alice") == 1
