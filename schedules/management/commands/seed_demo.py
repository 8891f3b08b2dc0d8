from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken

from schedules import services
from schedules.models import ImportRun, ScheduledImport

DEMO_USER = "demo"
DEMO_PASSWORD = "demo-password"
DEMO_IMPORT = "Demo products"
# Hourly: a demo left running must not write 1,440 runs a day. Its first run is queued when it
# is created, so `make run` shows a finished run as soon as the worker is up.
DEMO_INTERVAL_SECONDS = 3600
# What earlier versions seeded; a demo still on it is moved to the hourly schedule.
OLD_DEMO_INTERVAL_SECONDS = 60


class Command(BaseCommand):
    help = "Create the demo staff user, an API token and a demo import of the bundled CSV."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--base-url",
            default=f"http://127.0.0.1:{settings.WEB_PORT}",
            help="where the web process serves the bundled sample CSV",
        )

    def handle(self, base_url: str, **options) -> None:
        try:
            self._seed(base_url)
        except ValidationError as error:
            # (a --base-url the import's rules refuse raised with a traceback)
            words = "; ".join(f"{k}: {' '.join(v)}" for k, v in error.message_dict.items())
            raise CommandError(f"--base-url {base_url!r}: {words}") from None

    def _seed(self, base_url: str) -> None:
        User = get_user_model()
        user, created = User.objects.get_or_create(
            username=DEMO_USER, defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save()
        source_url = f"{base_url.rstrip('/')}/demo/products.csv"
        imp = ScheduledImport.objects.filter(owner=user, name=DEMO_IMPORT).first()
        if imp is None:
            imp = services.create_import(
                user,
                name=DEMO_IMPORT,
                description="The bundled sample CSV, served by the web process.",
                source_url=source_url,
                dataset="demo-products",
                key_column="sku",
                columns=[
                    {"name": "sku", "type": "text", "required": True},
                    {"name": "price", "type": "decimal", "required": True},
                    {"name": "stock", "type": "int", "required": False},
                ],
                schedule_type="interval",
                interval_seconds=DEMO_INTERVAL_SECONDS,
            )
            services.enqueue_run(imp, trigger=ImportRun.Trigger.MANUAL, user=user)
        else:
            changes = {}
            if imp.source_url != source_url:
                changes["source_url"] = source_url
            if imp.interval_seconds == OLD_DEMO_INTERVAL_SECONDS:
                changes["interval_seconds"] = DEMO_INTERVAL_SECONDS
            if changes:
                services.update_import(imp, **changes)
        _, token = AuthToken.objects.create(user=user, expiry=None)
        self.stdout.write(f"demo user:     {_sign_in_words(user)}")
        self.stdout.write(f"demo import:   #{imp.pk} {imp.name} ({imp.schedule_description})")
        self.stdout.write(f"demo API token: {token}")


def _sign_in_words(user) -> str:
    """The demo's credentials where they sign in to the admin, else why not and what to do:
    every `make run` printed `demo / demo-password` after the password was changed, or for a
    `demo` user made by `api_token --create` (no password, not staff). Advice that cannot help
    is not given: a password set by changepassword did not let a user who is not staff in, and
    one changed on purpose was told to set one again at every start."""
    if user.is_active and user.is_staff:
        if user.check_password(DEMO_PASSWORD):
            return f"{DEMO_USER} / {DEMO_PASSWORD}"
        if user.has_usable_password():
            return f"{DEMO_USER} (its password was changed from the demo's: sign in with that one)"
        return (
            f"{DEMO_USER} (it has no password, so this prints none; "
            f'`make manage ARGS="changepassword {DEMO_USER}"` sets one)'
        )
    why = " and ".join(
        why
        for why, holds in (("it is not staff", not user.is_staff),
                           ("it is deactivated", not user.is_active))
        if holds
    )  # fmt: skip
    password = "" if user.has_usable_password() else ", and sets its password there"
    return (
        f'{DEMO_USER} ({why}, so it cannot sign in to the admin: an admin ticks "Active", '
        f'"Staff status" and "Superuser status" on its page under Users in the admin{password}; '
        '`make manage ARGS="createsuperuser"` makes such an admin)'
    )
