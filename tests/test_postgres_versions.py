"""PostgreSQL 14 to 17 are supported; an older server is refused on connect with a clear
message, in every process (the check runs on each new connection)."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from common import postgres


@pytest.mark.parametrize("version", [90624, 120018, 130015])
def test_a_server_older_than_14_is_refused_with_a_clear_message(version):
    with pytest.raises(ImproperlyConfigured) as refused:
        postgres.refuse_unsupported(version)

    major = version // 10000
    assert str(refused.value).startswith(
        f"PostgreSQL {major} is not supported: importbeat needs PostgreSQL 14 or newer"
    )


@pytest.mark.parametrize("version", [140000, 150020, 160004, 170002])
def test_servers_14_to_17_are_accepted(version):
    postgres.refuse_unsupported(version)


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_to_an_old_server_is_closed_and_refused(monkeypatch):
    # Given the server this suite runs on, pretending to be PostgreSQL 13
    connection.close()
    monkeypatch.setattr(postgres, "MIN_VERSION", connection.pg_version // 10000 + 1)

    # When a process connects, the connection is refused and closed
    with pytest.raises(ImproperlyConfigured, match="is not supported"):
        connection.ensure_connection()
    assert connection.connection is None

    # And once the server is good enough, the next query connects again
    monkeypatch.undo()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
