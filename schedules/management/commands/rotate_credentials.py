"""Re-encrypt every saved source credential with the first IMPORTBEAT_ENCRYPTION_KEY.

Rotation: put the new key first in IMPORTBEAT_ENCRYPTION_KEY (the old ones after it), restart
the processes, run this command, then drop the old keys.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand
from django.db import transaction

from schedules import credentials
from schedules.models import ReplacedCredential, ScheduledImport


class Command(BaseCommand):
    help = "Re-encrypt the saved source credentials with the first IMPORTBEAT_ENCRYPTION_KEY."

    def handle(self, *args, **options) -> None:
        count = 0
        ids = ScheduledImport.objects.exclude(credential_secret="").values_list("pk", flat=True)
        for pk in ids.iterator():
            with transaction.atomic():
                imp = ScheduledImport.objects.select_for_update().filter(pk=pk).first()
                if imp is None or not imp.credential_secret:
                    continue
                # update(): the credential's ciphertext is no change a user made.
                ScheduledImport.objects.filter(pk=pk).update(
                    credential_secret=credentials.rotate(imp.credential_secret)
                )
                count += 1
        # Replaced credentials still waiting to be hidden in their runs: a key dropped after
        # this command must not leave them unreadable.
        waiting = 0
        for replaced in ReplacedCredential.objects.only("pk", "secret").iterator():
            waiting += ReplacedCredential.objects.filter(
                pk=replaced.pk, secret=replaced.secret
            ).update(secret=credentials.rotate(replaced.secret))
        self.stdout.write(f"re-encrypted {count} credential(s) with the first key")
        if waiting:
            self.stdout.write(f"re-encrypted {waiting} replaced credential(s) still to be hidden")
