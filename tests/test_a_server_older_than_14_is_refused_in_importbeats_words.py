"""A server older than 14 is refused in importbeat's words (compat hunt): a real PostgreSQL 13
was refused with Django's NotSupportedError ("PostgreSQL 14 or later is required (found
13.23)", a 45-line traceback), never with the words README and SPEC promise ("PostgreSQL 13 is
not supported: importbeat needs PostgreSQL 14 or newer ...").

Django checks the version itself in init_connection_state, before connection_created is sent,
so common.postgres.check_new_connection never sees an old server. The suite's test sets
MIN_VERSION above the real server's, a case Django's own check lets through. Seen on a real
13.23: `manage.py migrate` ends `django.db.utils.NotSupportedError: PostgreSQL 14 or later is
required (found 13.23).` This probe pretends the suite's server is 13 where Django reads it.
"""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections
from django.db.backends.base import base as backend_base


@pytest.mark.django_db(transaction=True)
def test_a_process_meeting_postgresql_13_says_importbeats_words(monkeypatch):
    # Given a fresh process (Django has not checked this alias yet) and a server that is 13
    connection.close()
    monkeypatch.setattr(backend_base, "RAN_DB_VERSION_CHECK", set())
    monkeypatch.setitem(connections["default"].__dict__, "pg_version", 130023)

    # When it connects, it is refused in the words the README promises, and closed
    with pytest.raises(ImproperlyConfigured) as refused:
        connection.ensure_connection()
    assert str(refused.value).startswith(
        "PostgreSQL 13 is not supported: importbeat needs PostgreSQL 14 or newer"
    )
    assert connection.connection is None

    # And the suite's own server still answers afterwards
    monkeypatch.undo()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
