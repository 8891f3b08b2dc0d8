"""Re-encrypt every saved source credential with the first IMPORTBEAT_ENCRYPTION_KEY.

Rotation: put the new key first in IMPORTBEAT_ENCRYPTION_KEY (the old ones after it), restart
the processes, run this command, then drop the old keys.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from schedules import credentials
from schedules.models import ReplacedCredential, ScheduledImport


class Command(BaseCommand):
    help = "Re-encrypt the saved source credentials with the first IMPORTBEAT_ENCRYPTION_KEY."

    def handle(self, *args, **options) -> None:
        if not credentials.keys_configured():
            raise CommandError(
                "no IMPORTBEAT_ENCRYPTION_KEY is configured: nothing to encrypt with"
            )
        count, unreadable = 0, []
        ids = ScheduledImport.objects.exclude(credential_secret="").values_list("pk", flat=True)
        for pk in ids.iterator():
            with transaction.atomic():
                imp = ScheduledImport.objects.select_for_update().filter(pk=pk).first()
                if imp is None or not imp.credential_secret:
                    continue
                try:
                    rotated = credentials.rotate(imp.credential_secret)
                except ImproperlyConfigured:
                    # No key opens it: the others are re-encrypted, and this one named (it was
                    # a bare InvalidToken traceback, and the rest were left).
                    unreadable.append(f"{imp.pk} ({imp.name})")
                    continue
                # update(): the credential's ciphertext is no change a user made.
                ScheduledImport.objects.filter(pk=pk).update(credential_secret=rotated)
                count += 1
        # Replaced credentials still waiting to be hidden in their runs: a key dropped after
        # this command must not leave them unreadable.
        waiting = 0
        for replaced in ReplacedCredential.objects.only("pk", "secret").iterator():
            try:
                rotated = credentials.rotate(replaced.secret)
            except ImproperlyConfigured:
                continue  # (its runs are hidden with the key that opens it, or with none)
            waiting += ReplacedCredential.objects.filter(
                pk=replaced.pk, secret=replaced.secret
            ).update(secret=rotated)
        self.stdout.write(f"re-encrypted {count} credential(s) with the first key")
        if waiting:
            self.stdout.write(f"re-encrypted {waiting} replaced credential(s) still to be hidden")
        if unreadable:
            raise CommandError(
                f"no IMPORTBEAT_ENCRYPTION_KEY opens the credential of import(s) "
                f"{', '.join(unreadable)}: put the key it was saved with back among the keys "
                "and run this again, or give those imports their credential anew"
            )
