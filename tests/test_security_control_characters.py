"""Control characters: refused in names when saved, and harmless on every way out of what is
already stored (issue 11, point 6).

Regressions: a name with CR/LF made the alert email raise BadHeaderError (the alert was lost),
and escape sequences in a name reached an operator's terminal through `run_import`.
"""

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from schedules import notifications
from schedules.models import ImportRun, NotificationDelivery, ScheduledImport
from schedules.text import printable
from tasks import webhooks
from tests.api_support import API, client_for, import_body, make_run
from tests.factories import PRODUCTS_CSV, make_import

pytestmark = pytest.mark.django_db

CLEAR_SCREEN = "\x1b[2J\x1b[31m"


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", "prices\r\nBcc: victim@example.com"),
        ("name", f"prices{CLEAR_SCREEN}"),
        ("key_column", "sku\x1b]8;;http://evil/\x07"),
        ("dataset", "prices\nx"),
    ],
)
def test_a_name_with_control_characters_is_refused_when_saved(alice, field, value):
    fields = {"name": "prices", "key_column": "sku", "dataset": "prices", field: value}
    with pytest.raises(ValidationError) as refused:
        make_import(alice, "https://example.com/p.csv", **fields)
    assert "control characters" in str(refused.value.message_dict[field])


def test_the_api_refuses_them_too_also_in_column_names(alice):
    client = client_for(alice)

    named = client.post(f"{API}/imports/", import_body(name="a\rb"))
    columns = client.post(
        f"{API}/imports/", import_body(columns=[{"name": "sku"}, {"name": "x\x1b[1m"}])
    )

    assert named.status_code == 400 and "control characters" in named.json()["errors"]["name"][0]
    assert columns.status_code == 400 and "control characters" in str(columns.json()["errors"])


def test_an_alert_for_a_stored_name_with_a_line_break_is_still_sent(alice, mailoutbox):
    # Given an import whose name was stored before the rule (a CR/LF header injection)
    imp = make_import(alice, "https://example.com/p.csv")
    ScheduledImport.objects.filter(pk=imp.pk).update(
        name="prices\r\nBcc: victim@example.com", consecutive_failures=3
    )
    run = make_run(imp, "failed", error_message="boom")
    imp.refresh_from_db()
    notifications.queue_alert(imp, run, ("email",))

    webhooks.deliver(NotificationDelivery.objects.get(scheduled_import=imp).pk)

    (mail,) = mailoutbox
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert "prices\\r\\nBcc: victim@example.com" in mail.subject
    assert mail.bcc == [] and mail.to == ["alice@example.com"]


def test_run_import_prints_no_escape_sequence_whatever_is_stored(alice, csv_server):
    # Given a stored name with escape sequences and a file whose bad row carries one too
    body = PRODUCTS_CSV + f",{CLEAR_SCREEN},1\n"
    imp = make_import(alice, csv_server.serve("/p.csv", body))
    ScheduledImport.objects.filter(pk=imp.pk).update(name=f"prices{CLEAR_SCREEN}")
    out, err = io.StringIO(), io.StringIO()

    call_command("run_import", imp.pk, stdout=out, stderr=err)

    printed = out.getvalue() + err.getvalue()
    assert "\x1b" not in printed
    assert "prices\\x1b[2J" in printed
    assert ImportRun.objects.get(scheduled_import=imp).status == "partial"


def test_a_failed_run_import_escapes_its_error_message(alice, csv_server):
    imp = make_import(alice, csv_server.serve("/p.csv", f"sku{CLEAR_SCREEN},name\nA,b\n"))

    with pytest.raises(CommandError) as failed:
        call_command("run_import", imp.pk, stdout=io.StringIO(), stderr=io.StringIO())

    assert "\x1b" not in str(failed.value)


def test_printable_escapes_controls_and_bidi_overrides_and_keeps_the_rest():
    assert printable("naïve café, 東京") == "naïve café, 東京"
    assert printable("a\tb\x1b\u202e") == "a\\tb\\x1b\\u202e"
