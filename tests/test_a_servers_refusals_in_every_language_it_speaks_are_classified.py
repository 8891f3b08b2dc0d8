"""A PostgreSQL that refuses a connection in another language (`lc_messages`) is understood as
an English one is: a German server's "zu viele Verbindungen von Rolle »app«" is a role at its
CONNECTION LIMIT, "Datenbank »x« existiert nicht" a database that does not exist.

Regression (says hunt): libpq keeps no SQLSTATE for a refused connection, and error_words knew
the English phrases only, so a German server's refusal for want of a connection was said in
its own words (naming the role) and taken for an outage: the API answered "the database cannot
be reached now" where an English server's is "no free connection", and a worker handed its
runs back as "importbeat's database is unreachable". Read now by the server's message
catalogue (common.server_languages), checked here against this machine's catalogues.
"""

from __future__ import annotations

import gettext
import glob
from pathlib import Path

import psycopg
import pytest
import requests

from common import error_words
from common.server_languages import REFUSALS
from project.devservices import free_port
from tests.conftest import answers, wait_for
from tests.server_settings_support import a_server_in_german

ROLE_FULL = "the database user has no free connection: it is at its CONNECTION LIMIT"
# What the API says for a database without a free connection (schedules.api.middleware)
NO_FREE_CONNECTION = (
    "the database has no free connection now (it is at its connection limit), so nothing was "
    "read or changed; try again in a moment"
)
CATALOGUES = sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES/postgres-15.mo"))


@pytest.mark.skipif(not CATALOGUES, reason="no PostgreSQL 15 message catalogue here")
@pytest.mark.parametrize("catalogue", CATALOGUES, ids=lambda path: Path(path).parts[4])
def test_the_table_says_what_each_catalogue_of_this_machine_says(catalogue):
    language = Path(catalogue).parts[4]
    with open(catalogue, "rb") as file:
        translations = gettext.GNUTranslations(file)
    for english, by_language in REFUSALS.items():
        translated = " ".join(translations.gettext(english).split())
        assert by_language.get(language, english) == translated, (language, english)


@pytest.mark.parametrize(
    ("english", "language"),
    [(english, language) for english, found in REFUSALS.items() for language in found],
)
def test_each_translated_refusal_is_said_as_the_english_one(english, language):
    # Given a refusal of a server speaking `language`, as libpq gives it
    def refused(message: str) -> psycopg.OperationalError:
        return psycopg.OperationalError(
            'connection to server at "10.0.0.5", port 5432 failed: FATAL:  '
            + message.replace("%s", "importbeat")
        )

    translated, original = refused(REFUSALS[english][language]), refused(english)

    # Then it is said in the English one's words, and of the same kind
    assert error_words.reason(translated) == error_words.reason(original)
    assert error_words.reason(translated) != error_words.UNKNOWN
    assert error_words.out_of_connections(translated) == error_words.out_of_connections(original)


@pytest.mark.processes
def test_the_api_of_a_german_server_at_its_connection_limit_says_no_free_connection(processes):
    with a_server_in_german() as server:
        # Given the web on a German server whose application role is at its connection limit
        with psycopg.connect(server.url, autocommit=True) as operator:
            operator.execute("ALTER ROLE app CONNECTION LIMIT 0")
        port = free_port()
        processes.start(
            "web", PORT=str(port), WEB_CONCURRENCY="1", DATABASE_CONN_MAX_AGE="0",
            DATABASE_URL=server.url.replace("postgres@", "app@"),
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}/api/v1"
        wait_for(lambda: answers(f"{base}/health"), 30, what="web\n" + processes.logs())

        # When a caller whose token must be looked up asks the API, and one without asks /health
        listed = requests.get(
            f"{base}/imports/", headers={"Authorization": "Token 0123abcd"}, timeout=30
        )
        health = requests.get(f"{base}/health", timeout=30)

    # Then the API says the database has no free connection, not that it is away
    assert listed.status_code == 503, listed.text
    assert listed.json() == {"detail": NO_FREE_CONNECTION}
    # and neither names the role, the database nor the server's words
    for answer in (listed, health):
        assert "app" not in answer.text.replace("application", "")
        assert "Verbindungen" not in answer.text and "127.0.0.1" not in answer.text
    assert health.json()["checks"]["database"] == {"ok": False}
