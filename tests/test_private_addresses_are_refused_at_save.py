"""A source or callback URL whose host is written as a loopback, private, link-local or
metadata address (or is localhost) is refused when the import is saved, through the API, the
check before save and the admin, unless ALLOWED_PRIVATE_HOSTS exempts that host on that port.

Regression: such an import was saved (201), and then every run failed at fetch time and every
webhook was refused, with nothing at save telling the user. Host names are not looked up at
save: the check after the lookup, when a run or a webhook connects, stays the defence
(test_fetch_private_addresses.py).
"""

import socket

import pytest

from schedules import services
from schedules.models import ScheduledImport
from tests.api_support import API, client_for, import_body
from tests.factories import make_import

pytestmark = pytest.mark.django_db

ADMIN_ADD = "/admin/schedules/scheduledimport/add/"
RULE = (
    "loopback, private, link-local or metadata addresses unless the operator lists it in "
    "ALLOWED_PRIVATE_HOSTS"
)
PRIVATE_SOURCES = [
    "http://10.0.0.5/data.csv",
    "http://127.0.0.1:8080/x.csv",
    "http://[::1]/a.csv",
    "http://169.254.169.254/latest",
    "http://localhost/x.csv",
    "http://reports.localhost/x.csv",
    "http://2130706433/",
    "http://127.1/",
    "http://0x7f.0.0.1/",
    "https://[::ffff:10.0.0.1]/a.csv",
    "sftp://feeds@192.168.1.20/out/p.csv",
]


@pytest.fixture(autouse=True)
def _no_private_host_allowed(settings):
    # The suite allows its loopback servers (conftest); these tests start from the default.
    settings.ALLOWED_PRIVATE_HOSTS = []


@pytest.fixture
def no_lookups(monkeypatch) -> None:
    """Fail any DNS lookup: names are judged when something connects, not when saved."""

    def refuse(host, *args, **kwargs):
        raise AssertionError(f"looked up {host} at save")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "r@example.com", "x"))
    return client


def create(user, **fields):
    return client_for(user).post(f"{API}/imports/", import_body(**fields), format="json")


def admin_form(alice, **fields) -> dict:
    dataset = services.get_or_create_dataset(alice, "products")
    return {
        "owner": alice.pk, "name": "from the admin", "source_url": "https://example.com/p.csv",
        "dataset": dataset.pk,
        "delimiter": ",", "encoding": "utf-8", "has_header": "on", "key_column": "sku",
        "columns": "[]", "mode": "upsert", "schedule_type": "cron",
        "cron_expression": "0 3 * * *", "timezone": "UTC", "max_retries": 3,
        "retry_backoff_seconds": 30, "retry_backoff_max_seconds": 600, "timeout_seconds": 3600,
        "overlap": "skip", "catchup": "coalesce", "alert_after_failures": 3,
        "callback_url": "", "runs-TOTAL_FORMS": 0, "runs-INITIAL_FORMS": 0, **fields,
    }  # fmt: skip


@pytest.mark.parametrize("url", PRIVATE_SOURCES)
def test_a_source_on_a_private_address_is_refused_when_created(alice, url):
    # When alice creates an import whose source is written as a private address
    response = create(alice, source_url=url)

    # Then it is a 400 naming the source, in the one error shape, and nothing is saved
    assert response.status_code == 400, response.json()
    assert response.json()["detail"]
    assert RULE in response.json()["errors"]["source_url"][0]
    assert not ScheduledImport.objects.exists()


def test_the_refusal_says_in_plain_words_what_the_address_is_and_how_to_allow_it(alice):
    response = create(alice, source_url="http://10.0.0.5/data.csv")

    assert response.json()["errors"]["source_url"] == [
        "10.0.0.5 is a private address: imports may not fetch from loopback, private, "
        "link-local or metadata addresses unless the operator lists it in "
        "ALLOWED_PRIVATE_HOSTS (as 10.0.0.5:80)"
    ]


@pytest.mark.parametrize("shorthand", ["2130706433", "127.1", "0x7f.0.0.1", "0177.0.0.1"])
def test_an_ipv4_shorthand_is_named_with_the_address_it_stands_for(alice, shorthand):
    response = create(alice, source_url=f"http://{shorthand}/p.csv")

    assert response.json()["errors"]["source_url"][0].startswith(
        f"{shorthand} is 127.0.0.1, a private address"
    )


@pytest.mark.parametrize("shorthand", ["2130706433", "127.1", "0x7f.0.0.1", "0177.0.0.1"])
def test_a_callback_on_an_ipv4_shorthand_is_named_with_the_address_it_stands_for(
    alice, admin_client, shorthand
):
    # When alice creates an import whose callback is written as a loopback shorthand, in the
    # API and in the admin
    response = create(alice, callback_url=f"http://{shorthand}/hook")
    form = admin_client.post(ADMIN_ADD, admin_form(alice, callback_url=f"http://{shorthand}/h"))

    # Then both say what address it stands for, as for a source; it was "Enter a valid URL."
    said = f"{shorthand} is 127.0.0.1, a private address: webhooks may not be sent to"
    assert response.json()["errors"]["callback_url"][0].startswith(said), response.json()
    assert form.context["adminform"].form.errors["callback_url"][0].startswith(said)
    assert not ScheduledImport.objects.exists()


@pytest.mark.parametrize("url", ["http://exa mple.com/hook", "http://example..com/h", "http://"])
def test_a_callback_that_is_no_url_is_still_refused(alice, admin_client, url):
    response = create(alice, callback_url=url)
    form = admin_client.post(ADMIN_ADD, admin_form(alice, callback_url=url))

    assert response.json()["errors"]["callback_url"] == ["Enter a valid URL."]
    assert form.context["adminform"].form.errors["callback_url"] == ["Enter a valid URL."]
    assert not ScheduledImport.objects.exists()


@pytest.mark.parametrize(
    "url", ["http://10.20.30.40/hook", "http://169.254.169.254/latest", "http://localhost/h"]
)
def test_a_callback_on_a_private_address_is_refused_when_created(alice, url):
    response = create(alice, callback_url=url)

    assert response.status_code == 400
    assert "webhooks may not be sent to" in response.json()["errors"]["callback_url"][0]
    assert not ScheduledImport.objects.exists()


def test_changing_the_source_to_a_private_address_is_refused_and_changes_nothing(alice):
    # Given an import of a public source
    imp = make_import(alice, "https://example.com/p.csv")

    # When alice points it at the metadata address
    response = client_for(alice).patch(
        f"{API}/imports/{imp.pk}/",
        {"source_url": "http://169.254.169.254/latest/meta-data/"},
        format="json",
    )

    # Then it is refused, and the import keeps its source
    assert response.status_code == 400
    assert "169.254.169.254 is a private address" in response.json()["errors"]["source_url"][0]
    imp.refresh_from_db()
    assert imp.source_url == "https://example.com/p.csv"


def test_an_import_the_operator_refused_later_can_still_be_edited(alice, settings):
    """Every edit of an import whose source or callback the operator's settings refused after it
    was saved (ALLOWED_PRIVATE_HOSTS narrowed, MIN_INTERVAL_SECONDS raised) got a 400 on a field
    it did not send: its owner could not even move its schedule. The settings are checked on
    the fields an edit changes; its runs say the refusal when they connect."""
    # Given an import saved while its source, its callback and its interval were allowed
    settings.ALLOWED_PRIVATE_HOSTS = ["10.0.0.5:80", "10.0.0.6:80"]
    imp = make_import(
        alice, "http://10.0.0.5/p.csv", callback_url="http://10.0.0.6/hook", interval_seconds=60
    )
    # ... which the operator allows no longer
    settings.ALLOWED_PRIVATE_HOSTS = []
    settings.MIN_INTERVAL_SECONDS = 300
    client = client_for(alice)

    # When alice edits its description, then its cron schedule
    described = client.patch(f"{API}/imports/{imp.pk}/", {"description": "x"}, format="json")
    moved = client.patch(
        f"{API}/imports/{imp.pk}/",
        {"schedule_type": "cron", "cron_expression": "0 3 * * *"},
        format="json",
    )

    # Then both are saved, source and callback as they were
    assert (described.status_code, moved.status_code) == (200, 200), moved.json()
    imp.refresh_from_db()
    assert (imp.description, imp.cron_expression) == ("x", "0 3 * * *")
    assert (imp.source_url, imp.callback_url) == ("http://10.0.0.5/p.csv", "http://10.0.0.6/hook")
    # ... while changing the source, the callback or the interval checks them
    for field, value in [
        ("source_url", "http://10.0.0.5/other.csv"),
        ("callback_url", "http://10.0.0.6/other"),
    ]:
        refused = client.patch(f"{API}/imports/{imp.pk}/", {field: value}, format="json")
        assert refused.status_code == 400 and field in refused.json()["errors"]
    refused = client.patch(
        f"{API}/imports/{imp.pk}/",
        {"schedule_type": "interval", "interval_seconds": 60},
        format="json",
    )
    assert refused.status_code == 400 and "interval_seconds" in refused.json()["errors"]


def test_the_check_before_save_refuses_a_private_source_without_fetching(alice):
    response = client_for(alice).post(
        f"{API}/imports/check", import_body(source_url="http://10.0.0.5/data.csv"), format="json"
    )

    assert response.status_code == 400
    assert RULE in response.json()["errors"]["source_url"][0]


def test_an_address_allowed_on_its_port_is_saved(alice, settings):
    # Given the operator allows 10.0.0.5 on 8080, and 10.0.0.9 by its bare name
    settings.ALLOWED_PRIVATE_HOSTS = ["10.0.0.5:8080", "10.0.0.9", "[fd00::7]:*"]

    # Then sources on those ports are saved
    for name, url in [
        ("on 8080", "http://10.0.0.5:8080/p.csv"),
        ("http", "http://10.0.0.9/p.csv"),
        ("https", "https://10.0.0.9/p.csv"),
        ("any port", "sftp://feeds@[fd00::7]/out/p.csv"),
    ]:
        assert create(alice, name=name, source_url=url).status_code == 201, url


@pytest.mark.parametrize(
    ("url", "entry"),
    [
        ("http://10.0.0.5/p.csv", "10.0.0.5:80"),  # allowed on 8080 only
        ("http://10.0.0.9:8443/p.csv", "10.0.0.9:8443"),  # a bare name covers 80 and 443
        ("sftp://feeds@10.0.0.9/out/p.csv", "10.0.0.9:22"),  # SFTP's port is 22
    ],
)
def test_an_allowed_address_on_another_port_is_refused(alice, settings, url, entry):
    settings.ALLOWED_PRIVATE_HOSTS = ["10.0.0.5:8080", "10.0.0.9"]

    response = create(alice, source_url=url)

    assert response.status_code == 400
    assert f"ALLOWED_PRIVATE_HOSTS (as {entry})" in response.json()["errors"]["source_url"][0]


def test_a_bad_entry_in_allowed_private_hosts_is_named_when_it_decides(alice, settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["10.0.0.5:http"]

    response = create(alice, source_url="http://10.0.0.5/p.csv")

    assert response.json()["errors"]["source_url"] == [
        "the server's setting ALLOWED_PRIVATE_HOSTS: '10.0.0.5:http' has no valid port"
    ]


def test_localhost_is_saved_when_allowed_by_its_name(alice, settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["localhost:8000"]

    assert create(alice, source_url="http://localhost:8000/demo/p.csv").status_code == 201


def test_host_names_are_not_looked_up_at_save(alice, no_lookups):
    # Given a name that may resolve to a private address, or may not by the time a run connects
    response = create(alice, source_url="http://intranet.example.com/export.csv")

    # Then it is saved as it is: the lookup is the run's, when it connects
    assert response.status_code == 201, response.json()


def test_public_addresses_are_saved(alice):
    response = create(
        alice, source_url="http://93.184.216.34/p.csv", callback_url="https://[2606:4700::1111]/h"
    )

    assert response.status_code == 201, response.json()


def test_the_admin_refuses_a_private_source_and_a_private_callback(admin_client, alice):
    # When an operator adds an import in the admin with a private source and callback
    response = admin_client.post(
        ADMIN_ADD,
        admin_form(
            alice, source_url="sftp://feeds@10.1.2.3/out/p.csv", callback_url="http://[::1]/h"
        ),
    )

    # Then the form comes back with both errors, and nothing is saved
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "10.1.2.3 is a private address" in errors["source_url"][0]
    assert "::1 is a private address" in errors["callback_url"][0]
    assert not ScheduledImport.objects.exists()


def test_the_admin_saves_a_private_source_the_operator_allows(admin_client, alice, settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["10.1.2.3:22"]

    response = admin_client.post(
        ADMIN_ADD, admin_form(alice, source_url="sftp://feeds@10.1.2.3/out/p.csv")
    )

    assert response.status_code == 302
    assert ScheduledImport.objects.get().source_url == "sftp://feeds@10.1.2.3/out/p.csv"
