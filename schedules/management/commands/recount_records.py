"""Count datasets' records again, for a `record_count` that records changed behind its writers'
backs (a shell, SQL) left wrong: the lists and the records' `count` read the kept count and
never count at a read. And since records were changed that way, the next import of each dataset
counted merges its file whole: the file applied last, unchanged, was skipped as "the dataset is
unchanged since", so a record deleted by hand never came back.

It also reads each dataset's field names again from its records (Dataset.fields, the export's
header), exactly: a scan of every record, about 20 µs a record 60 fields wide, with no web
request's time limit over it. Run once after migration 0044, it makes the names of datasets
from before it known, which upsert imports alone never learn.

Each dataset is counted under its lock, as a merge holds it, in a transaction of its own: a
merge in progress finishes first, and no dataset waits for the others' counts.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from schedules import services
from schedules.models import Dataset


class Command(BaseCommand):
    help = (
        "Count the records of every dataset (or of the ones given by id) again and correct "
        "the kept record_count, and read their field names again (the export's header); prints "
        "each count it corrected. The next import of each dataset reads its file whole "
        "(records were changed by hand)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("dataset_ids", nargs="*", type=int, metavar="DATASET_ID")

    def handle(self, *args, dataset_ids: list[int], **options) -> None:
        datasets = Dataset.objects.order_by("pk").select_related("owner")
        if dataset_ids:
            datasets = datasets.filter(pk__in=dataset_ids)
            missing = sorted(set(dataset_ids) - set(datasets.values_list("pk", flat=True)))
            if missing:
                raise CommandError(f"no dataset {', '.join(map(str, missing))}")
        counted = corrected = 0
        for dataset in datasets.iterator():
            with transaction.atomic():
                if not services.lock_datasets([dataset.pk]):
                    continue  # deleted meanwhile
                kept = Dataset.objects.values_list("record_count", flat=True).get(pk=dataset.pk)
                services.recount_records([dataset.pk])
                services.mark_datasets_changed([dataset.pk])
                now = Dataset.objects.values_list("record_count", flat=True).get(pk=dataset.pk)
            counted += 1
            if now != kept:
                corrected += 1
                self.stdout.write(
                    f"dataset {dataset.pk} ({dataset.owner.get_username()}/{dataset.name}):"
                    f" {kept:,} -> {now:,} records"
                )
        self.stdout.write(
            f"{counted:,} datasets counted, {corrected:,} corrected; the next import of each "
            "reads its file whole"
        )
