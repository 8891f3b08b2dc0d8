"""tasks.crashes.secrets_hidden: the source checks and a notification's delivery run inside it,
so an unexpected error quoting the import's credential leaves them as TaskCrashed, its text and
traceback hidden (what Celery stores, logs and sends to Flower), and any other error leaves as
it is. The one real path found (a Content-Length int() refused, quoting an echoed key) is fixed
in tasks.fetch; this pins the wrapper for the next one."""

import pytest

from tasks.crashes import TaskCrashed, secrets_hidden
from tasks.errors import PermanentImportError
from tests.factories import make_import

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("encryption_key")]

KEY = "48151623"
CREDENTIAL = {"kind": "header", "name": "X-Api-Key", "value": KEY}


def crash(imp, error: Exception) -> BaseException:
    with pytest.raises(BaseException) as raised, secrets_hidden(imp):
        raise error
    return raised.value


def test_an_error_quoting_the_credential_leaves_as_taskcrashed_without_it(alice):
    # Given an import with a credential
    imp = make_import(alice, "https://example.com/p.csv", credential=CREDENTIAL)

    # When an unexpected error quoting it, chained to another, leaves the block
    try:
        int(f"{KEY}²")
    except ValueError as cause:
        error = RuntimeError(f"reading {KEY}² failed")
        error.__cause__ = cause
    left = crash(imp, error)

    # Then it is a TaskCrashed whose text names the error and its frames, the key hidden
    assert isinstance(left, TaskCrashed)
    text = str(left)
    assert KEY not in text and KEY not in repr(left)
    assert "invalid literal for int() with base 10: '[hidden]²'" in text
    assert "RuntimeError: reading [hidden]² failed" in text
    assert "in crash" in text  # where it happened
    assert left.__cause__ is None and left.__context__ is not None  # `from None`: not shown


def test_other_errors_leave_as_they_are(alice):
    imp = make_import(alice, "https://example.com/p.csv", credential=CREDENTIAL)
    plain = ConnectionRefusedError(111, "Connection refused")
    expected = PermanentImportError("The source answered HTTP 404.")

    assert crash(imp, plain) is plain
    assert crash(imp, expected) is expected
