"""Every field rule answers 400 `{"detail", "errors": {field: [messages]}}` naming the field."""

import pytest

from schedules.models import ScheduledImport
from tests.api_support import API, SOURCE, client_for, import_body
from tests.factories import make_import

pytestmark = pytest.mark.django_db

CASES = [
    ("cron_expression", {"cron_expression": "* * * *"}),
    ("cron_expression", {"cron_expression": "60 * * * *"}),
    ("cron_expression", {"cron_expression": "0 24 * * *"}),
    ("cron_expression", {"cron_expression": "0 0 0 * *"}),
    ("cron_expression", {"cron_expression": "0 0 * 13 *"}),
    ("cron_expression", {"cron_expression": "0 0 * * 8"}),
    ("cron_expression", {"cron_expression": "*/0 * * * *"}),
    ("cron_expression", {"cron_expression": ""}),
    # regression: a well-formed date that never comes (31 February) answered 500
    ("cron_expression", {"cron_expression": "0 0 31 2 *"}),
    ("timezone", {"timezone": "Mars/Olympus_Mons"}),
    # the system's zone files list these, but they are no zone (`localtime`: each host's own)
    ("timezone", {"timezone": "localtime"}),
    ("timezone", {"timezone": "Factory"}),
    (
        "interval_seconds",
        {"schedule_type": "interval", "interval_seconds": 5, "cron_expression": ""},
    ),
    (
        "interval_seconds",
        {"schedule_type": "interval", "interval_seconds": None, "cron_expression": ""},
    ),
    ("source_url", {"source_url": "ftp://example.com/a.csv"}),
    ("source_url", {"source_url": "file:///etc/passwd"}),
    ("source_url", {"source_url": "not a url"}),
    ("callback_url", {"callback_url": "gopher://example.com/"}),
    # the URL is shown wherever the import is: a password in it would be too
    ("callback_url", {"callback_url": "https://hook:secret@hooks.example.com/in"}),
    # urlsplit raised on these: a 500 on the API and the admin's form
    ("source_url", {"source_url": "http://[::1/x"}),
    ("source_url", {"source_url": "sftp://u@[::1/x"}),
    ("callback_url", {"callback_url": "http://[::1/x"}),
    ("key_column", {"key_column": ""}),
    ("key_column", {"key_column": None}),
    ("columns", {"columns": [{"name": "sku", "type": "money"}]}),
    ("columns", {"columns": {"name": "sku"}}),
    ("schedule_type", {"schedule_type": "weekly"}),
    ("dataset", {"dataset": "no spaces please"}),
    ("delimiter", {"delimiter": ";;"}),
    # saved, every run failed saying the key column was not among the file's columns
    ("delimiter", {"delimiter": '"'}),
    ("delimiter", {"delimiter": "\n"}),
    ("delimiter", {"delimiter": "\r"}),
    ("encoding", {"encoding": "klingon-8"}),
    ("timeout_seconds", {"timeout_seconds": 0}),
    ("mode", {"mode": "replace"}),
    ("description", {"description": "nul \x00 byte"}),
    # the rule says distinct names; the same event twice was saved
    ("notify_on", {"notify_on": ["failed", "failed"]}),
    ("columns", {"columns": [{"name": "s\x00ku"}]}),
    # repeated in every row error: a run's errors grew to 100 MB
    ("columns", {"columns": [{"name": "x" * 201}]}),
]


@pytest.mark.parametrize(("field", "change"), CASES, ids=[f"{f}:{c}" for f, c in CASES])
def test_a_broken_rule_answers_400_naming_its_field(alice, settings, field, change):
    # Given the default minimum interval of 60 seconds
    settings.MIN_INTERVAL_SECONDS = 60

    # When alice creates an import that breaks one rule
    response = client_for(alice).post(f"{API}/imports/", import_body(**change), format="json")

    # Then it is a 400 in the one error shape, naming that field
    assert response.status_code == 400, response.json()
    body = response.json()
    assert set(body) == {"detail", "errors"}
    assert field in body["errors"], body
    assert all(isinstance(m, str) for m in body["errors"][field])
    assert body["detail"]


def test_a_missing_required_field_is_named(alice):
    body = import_body()
    del body["key_column"]

    response = client_for(alice).post(f"{API}/imports/", body, format="json")

    assert response.status_code == 400
    assert "key_column" in response.json()["errors"]


def test_an_update_is_validated_by_the_same_rules(alice, settings):
    settings.MIN_INTERVAL_SECONDS = 60
    imp = make_import(alice, "https://example.com/a.csv", interval_seconds=3600)

    response = client_for(alice).patch(
        f"{API}/imports/{imp.pk}/", {"interval_seconds": 10}, format="json"
    )

    assert response.status_code == 400
    assert "interval_seconds" in response.json()["errors"]
    imp.refresh_from_db()
    assert imp.interval_seconds == 3600


# Bug 5 of the API hunt: each passed every check, and saving the import's beat entry then
# answered a bare 500 (the field is longer than its column in django-celery-beat's table)
TOO_LONG_FOR_THE_SCHEDULE = [
    ("0 0 * * " + ",".join(["1", "2", "3", "4", "5", "6", "0"] * 5)[:69], "day of week", 69, 64),
    ("0 0 * " + ",".join(f"{m:05d}" for m in range(1, 13)) + " *", "month", 71, 64),
    # names are kept as numbers, and a weekday step as its days: 7 characters become 13 each
    ("0 0 * * " + ",".join(["1/1"] * 6), "day of week", 83, 64),
]


@pytest.mark.parametrize(("cron", "name", "length", "limit"), TOO_LONG_FOR_THE_SCHEDULE)
def test_a_cron_field_longer_than_the_schedule_keeps_is_a_400_saying_so(
    alice, cron, name, length, limit
):
    client = client_for(alice)
    imp = make_import(
        alice, SOURCE, name="saved", schedule_type="cron", cron_expression="30 2 * * *",
        interval_seconds=None,
    )  # fmt: skip

    created = client.post(f"{API}/imports/", import_body(cron_expression=cron), format="json")
    changed = client.patch(f"{API}/imports/{imp.pk}/", {"cron_expression": cron}, format="json")

    for response in (created, changed):
        assert response.status_code == 400, response.content
        [message] = response.json()["errors"]["cron_expression"]
        assert message.startswith(
            f"{name} field is {length} characters long (names written as numbers), and the "
            f"schedule keeps at most {limit}"
        ), message
    imp.refresh_from_db()
    assert imp.cron_expression == "30 2 * * *"


def test_a_cron_field_as_long_as_the_schedule_keeps_is_taken(alice):
    day_of_week = ",".join(["1", "2", "3", "4", "5", "6", "0"] * 5)[:63]

    response = client_for(alice).post(
        f"{API}/imports/", import_body(cron_expression=f"0 0 * * {day_of_week}"), format="json"
    )

    assert response.status_code == 201, response.content


def test_a_body_that_is_not_an_object_is_a_400(alice):
    response = client_for(alice).post(f"{API}/imports/", [1, 2], format="json")

    assert response.status_code == 400
    assert response.json()["detail"] and "errors" in response.json()


def test_a_wrong_choice_in_a_body_names_the_valid_ones(alice):
    response = client_for(alice).post(
        f"{API}/imports/", import_body(mode="replace", overlap="wait"), format="json"
    )

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["mode"] == ['"replace" is not a valid choice; use one of: upsert, sync.']
    assert errors["overlap"] == ['"wait" is not a valid choice; use one of: skip, queue.']


def test_a_wrong_choice_in_a_filter_names_the_valid_ones(alice):
    client = client_for(alice)

    imports = client.get(f"{API}/imports/", {"status": "sleeping"})
    runs = client.get(f"{API}/runs/", {"trigger": "cron"})

    assert imports.json()["errors"]["status"] == [
        "sleeping is not one of: active, paused, cancelled"
    ]
    assert runs.json()["errors"]["trigger"] == [
        "cron is not one of: schedule, manual, api, catchup"
    ]


@pytest.mark.parametrize(
    ("existing", "body", "field", "said"),
    [
        # the cron expression of an interval import was dropped: it went on every hour
        (
            {"schedule_type": "interval", "interval_seconds": 3600},
            {"cron_expression": "0 3 * * *"},
            "cron_expression",
            "only for schedule_type 'cron', and this import's is 'interval': "
            'send "schedule_type": "cron" with it to switch',
        ),
        (
            {"schedule_type": "cron", "cron_expression": "30 2 * * *"},
            {"interval_seconds": 60},
            "interval_seconds",
            "only for schedule_type 'interval', and this import's is 'cron': "
            'send "schedule_type": "interval" with it to switch',
        ),
    ],
)
def test_a_schedule_field_of_the_other_type_is_refused_not_dropped(
    alice, existing, body, field, said
):
    imp = make_import(alice, SOURCE, **existing)

    response = client_for(alice).patch(f"{API}/imports/{imp.pk}/", body, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {field: [said]}
    imp.refresh_from_db()
    assert (imp.schedule_type, imp.cron_expression, imp.interval_seconds) == (
        existing["schedule_type"],
        existing.get("cron_expression", ""),
        existing.get("interval_seconds"),
    )


def test_a_create_with_an_interval_and_the_cron_type_is_refused(alice):
    response = client_for(alice).post(
        f"{API}/imports/", import_body(interval_seconds=60), format="json"
    )

    assert response.status_code == 400 and list(response.json()["errors"]) == ["interval_seconds"]


def test_switching_the_schedule_type_with_its_field_is_taken(alice):
    imp = make_import(alice, SOURCE)  # every hour

    response = client_for(alice).patch(
        f"{API}/imports/{imp.pk}/",
        {"schedule_type": "cron", "cron_expression": "0 3 * * *", "interval_seconds": None},
        format="json",
    )

    assert response.status_code == 200, response.content
    imp.refresh_from_db()
    assert (imp.schedule_type, imp.cron_expression, imp.interval_seconds) == (
        "cron",
        "0 3 * * *",
        None,
    )


def test_a_name_typed_in_another_unicode_form_is_the_same_name(alice):
    # `café` and `cafe` + a combining accent were two imports with the same visible name
    client = client_for(alice)
    first = client.post(f"{API}/imports/", import_body(name="caf\u00e9"), format="json")
    second = client.post(
        f"{API}/imports/", import_body(name="cafe\u0301", dataset="other"), format="json"
    )

    assert first.status_code == 201
    assert second.status_code == 400
    assert second.json()["errors"]["name"] == ["you already have an import with this name"]


def _another_client_commits_first(monkeypatch, change) -> None:
    """The other client's edit commits after this request read the import, before it locks it."""
    from schedules import services
    from tests.importer_support import from_another_connection

    lock = services.as_it_is_now
    done: list[bool] = []

    def after_the_other_edit(imp, **options):
        if not done:
            done.append(True)
            from_another_connection(change)
        return lock(imp, **options)

    monkeypatch.setattr(services, "as_it_is_now", after_the_other_edit)


@pytest.mark.django_db(transaction=True)
def test_a_cron_edit_racing_a_switch_to_interval_is_refused_not_dropped(alice, monkeypatch):
    # It answered 200, the cron expression dropped: the rule read the import as first read
    from schedules import services

    client = client_for(alice)
    imp = client.post(f"{API}/imports/", import_body(), format="json").json()
    _another_client_commits_first(
        monkeypatch,
        lambda: services.update_import(
            ScheduledImport.objects.get(pk=imp["id"]),
            schedule_type="interval",
            interval_seconds=3600,
        ),
    )

    answer = client.patch(
        f"{API}/imports/{imp['id']}/", {"cron_expression": "0 5 * * *"}, format="json"
    )

    assert answer.status_code == 400
    assert answer.json()["errors"]["cron_expression"] == [
        "only for schedule_type 'cron', and this import's is 'interval': send "
        '"schedule_type": "cron" with it to switch'
    ]
    assert ScheduledImport.objects.get(pk=imp["id"]).interval_seconds == 3600


@pytest.mark.django_db(transaction=True)
def test_a_webhook_asked_for_as_another_client_removes_the_callback_is_refused(alice, monkeypatch):
    from schedules import services

    client = client_for(alice)
    body = import_body(
        callback_url="https://hooks.example.com/x", notify_on=["failed"],
        notify_channels=["email", "webhook"],
    )  # fmt: skip
    imp = client.post(f"{API}/imports/", body, format="json").json()
    _another_client_commits_first(
        monkeypatch,
        lambda: services.update_import(ScheduledImport.objects.get(pk=imp["id"]), callback_url=""),
    )

    answer = client.patch(
        f"{API}/imports/{imp['id']}/", {"notify_channels": ["webhook"]}, format="json"
    )

    # It answered 200, and failures then notified no one
    assert answer.status_code == 400
    assert "notify_channels" in answer.json()["errors"]
    assert ScheduledImport.objects.get(pk=imp["id"]).notify_channels == ["email", "webhook"]
