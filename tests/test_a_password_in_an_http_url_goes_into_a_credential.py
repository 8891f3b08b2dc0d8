"""A password in an http(s) source URL (`https://user:secret@host/file.csv`) is refused at save,
as an SFTP URL's already was: the URL is shown wherever the import is (the API, the admin, run
errors, alerts, the worker's log), a credential's secret parts nowhere. Imports saved before
are moved by migration 0020: the URL without its password, and a basic credential with that
user and password, which the fetcher sends as requests sent the URL's."""

from __future__ import annotations

import base64

import pytest

from schedules import credentials
from schedules.models import ImportRun, ScheduledImport
from schedules.validation import URL_PASSWORD
from tasks import runner
from tests.api_support import API, client_for, import_body
from tests.factories import PRODUCTS_CSV, make_import
from tests.saved_runs_support import run_data_migration

pytestmark = pytest.mark.django_db


def test_the_api_refuses_a_password_in_an_http_url_and_saves_nothing(alice):
    client = client_for(alice)
    url = "https://reader:s3cret@example.com/p.csv"

    created = client.post(f"{API}/imports/", import_body(source_url=url), format="json")

    assert created.status_code == 400
    assert created.json()["errors"]["source_url"] == [URL_PASSWORD]
    assert "s3cret" not in created.content.decode()
    assert not ScheduledImport.objects.exists()


def test_an_edit_that_puts_a_password_in_the_url_is_refused(alice):
    client = client_for(alice)
    imp = client.post(f"{API}/imports/", import_body(), format="json").json()

    edited = client.patch(
        f"{API}/imports/{imp['id']}/",
        {"source_url": "http://reader:s3cret@example.com/p.csv"},
        format="json",
    )

    assert edited.status_code == 400
    assert ScheduledImport.objects.get(pk=imp["id"]).source_url == imp["source_url"]


def test_a_user_name_alone_in_the_url_is_still_allowed(alice):
    client = client_for(alice)
    url = "https://reader@example.com/p.csv"

    created = client.post(f"{API}/imports/", import_body(source_url=url), format="json")

    assert created.status_code == 201, created.content


def run_migration_0020() -> None:
    run_data_migration("schedules", "0020_url_passwords_into_credentials")


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_a_url_password_into_a_basic_credential(
    alice, csv_server, encryption_key
):
    # Given an import saved before, its password in the URL (percent-encoded as it must be)
    served = csv_server.serve("/p.csv", PRODUCTS_CSV)
    with_password = served.replace("http://", "http://reader:p%40ss%2Fw@")
    imp = make_import(alice, served)
    ScheduledImport.objects.filter(pk=imp.pk).update(source_url=with_password)
    other = make_import(alice, served, name="no password", dataset="other")
    # When migration 0020 runs
    run_migration_0020()

    # Then the URL has no password, and a basic credential holds it, decoded
    imp.refresh_from_db()
    assert imp.source_url == served
    assert (imp.credential_kind, imp.credential_origin) == ("basic", credentials.origin(served))
    assert credentials.decrypt(imp.credential_secret) == {
        "kind": "basic", "username": "reader", "password": "p@ss/w",
    }  # fmt: skip
    other.refresh_from_db()
    assert (other.source_url, other.credential_kind) == (served, "")

    # And a run sends the server the same basic authentication the URL's password made
    run = ImportRun.objects.create(scheduled_import=imp, trigger="manual")
    runner.execute(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error_message
    sent = base64.b64encode(b"reader:p@ss/w").decode()
    assert csv_server.requests[-1][1]["Authorization"] == f"Basic {sent}"


@pytest.mark.django_db(transaction=True)
def test_without_an_encryption_key_the_migration_leaves_the_url_as_it_is(alice, settings):
    # Given an import with a password in its URL, and no encryption key configured
    settings.IMPORTBEAT_ENCRYPTION_KEYS = []
    url = "https://reader:s3cret@example.com/p.csv"
    imp = make_import(alice, "https://example.com/p.csv")
    ScheduledImport.objects.filter(pk=imp.pk).update(source_url=url)
    # When migration 0020 runs
    run_migration_0020()

    # Then the import is as it was (its owner moves the password at the next edit)
    imp.refresh_from_db()
    assert (imp.source_url, imp.credential_kind) == (url, "")
