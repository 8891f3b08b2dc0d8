from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken


class Command(BaseCommand):
    help = "Print a new API token for USERNAME (the last line of the output)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--create", action="store_true", help="create the user if missing")
        parser.add_argument("--staff", action="store_true", help="make the user staff")

    def handle(self, username: str, create: bool, staff: bool, **options) -> None:
        # As Django stores it (NFKC): `ﬁle` was looked for as typed and created as `file`,
        # said "created user ﬁle", and a second --create failed on the duplicate (ops hunt).
        username = get_user_model().normalize_username(username)
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not create:
                raise CommandError(f"no user {username!r}; pass --create to create it")
            _check_username(User, username)
            user = User.objects.create_user(username=username)
            self.stdout.write(f"created user {username}")
        elif not user.is_active:
            # Its token would answer 401 "User inactive or deleted" at every request.
            raise CommandError(f"the user {username!r} is inactive: activate it first")
        if staff and not user.is_staff:
            user.is_staff = True
            user.save(update_fields=["is_staff"])
        _, token = AuthToken.objects.create(user=user, expiry=None)
        self.stdout.write(token)


def _check_username(User, username: str) -> None:
    """The rules a username is created under (Django's validator and length), as a command's
    error: an empty or a too long one raised with a traceback, and one with control
    characters was created."""
    field = User._meta.get_field(User.USERNAME_FIELD)
    try:
        field.clean(username, None)
    except ValidationError as error:
        raise CommandError(
            f"the username {username!r} is not valid: {' '.join(error.messages)}"
        ) from None
