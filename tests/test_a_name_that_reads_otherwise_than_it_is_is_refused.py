"""An import's name with a character that makes it read otherwise than it is
(a right-to-left override, a zero-width space) is refused when set (attack hunt): bob could
name an import `pro\u202eslx.csv`, shown to staff in the admin and the dashboard as
"proxls.csv". Joiners that scripts and emoji need are kept; a name saved before stays
editable. (A dataset's name is a slug: ASCII letters, digits, `_` and `-`.)"""

from __future__ import annotations

import pytest

from schedules.models import ScheduledImport
from tests.api_support import API, client_for, import_body

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("name", "code"),
    [("pro\u202eslx.csv", "U+202E"), ("ops\u200b", "U+200B"), ("\ufeffprices", "U+FEFF"),
     ("a\u2066b\u2069", "U+2066")],
)  # fmt: skip
def test_a_name_with_an_invisible_or_direction_changing_character_is_a_400(bob, name, code):
    answer = client_for(bob).post(f"{API}/imports/", import_body(name=name), format="json")

    assert answer.status_code == 400, answer.content
    assert answer.json()["errors"]["name"] == [
        f"must not contain invisible or direction-changing characters ({code})"
    ]


@pytest.mark.parametrize(
    "name", ["خرید\u200cها", "family \U0001f468\u200d\U0001f469\u200d\U0001f467", "Ünïcødé prices"]
)
def test_names_that_need_joiners_are_saved(bob, name):
    answer = client_for(bob).post(f"{API}/imports/", import_body(name=name), format="json")

    assert answer.status_code == 201, answer.content


def test_an_import_named_so_before_stays_editable_and_its_rename_is_checked(bob):
    client = client_for(bob)
    created = client.post(f"{API}/imports/", import_body(), format="json").json()
    ScheduledImport.objects.filter(pk=created["id"]).update(name="pro\u202eslx.csv")
    url = f"{API}/imports/{created['id']}/"

    assert client.patch(url, {"max_retries": 5}, format="json").status_code == 200
    assert client.patch(url, {"name": "x\u202ey"}, format="json").status_code == 400
    assert client.patch(url, {"name": "prices"}, format="json").status_code == 200
