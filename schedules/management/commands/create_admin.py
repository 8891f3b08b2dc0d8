"""`python manage.py create_admin`: the first admin of a new installation, from the environment.

Reads Django's own variables for `createsuperuser --noinput` (DJANGO_SUPERUSER_USERNAME,
DJANGO_SUPERUSER_PASSWORD, DJANGO_SUPERUSER_EMAIL), but may run on every start (compose runs it
after `migrate`): an existing user is left as it is, so a password changed in the admin is never
reset by a restart, and without the variables it does nothing.
"""

from __future__ import annotations

import os
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Create the first admin (a superuser) from DJANGO_SUPERUSER_USERNAME, "
        "DJANGO_SUPERUSER_PASSWORD and DJANGO_SUPERUSER_EMAIL; leaves an existing user alone."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        # As Django stores it (NFKC): `ｆｉｌｅ` was looked for as typed, not found, created as
        # `file`, and every later start failed on the duplicate, compose's stack with it (ops
        # hunt).
        User = get_user_model()
        username = User.normalize_username(os.environ.get("DJANGO_SUPERUSER_USERNAME", "").strip())
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        email = os.environ.get("DJANGO_SUPERUSER_EMAIL", "").strip()
        if not username:
            self.stdout.write("DJANGO_SUPERUSER_USERNAME is not set: no admin created.")
            return
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"User {username} exists: left as it is.")
            return
        if not password:
            raise CommandError(
                f"DJANGO_SUPERUSER_PASSWORD is required to create the admin {username}."
            )
        try:
            validate_password(password, User(username=username, email=email))
        except ValidationError as error:
            raise CommandError(f"DJANGO_SUPERUSER_PASSWORD: {' '.join(error.messages)}") from None
        User.objects.create_superuser(username=username, email=email, password=password)
        self.stdout.write(f"Created the admin {username}; sign in at /admin/.")
