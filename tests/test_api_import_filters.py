"""Imports: find the failing ones (`?last_run_status=`), the late ones (`?late=`) and those the
dashboard lists (`?needs_attention=`)."""

import unicodedata
from datetime import timedelta

import pytest
from django.utils import timezone

from schedules.models import ScheduledImport
from tests.api_support import API, SOURCE, client_for
from tests.factories import make_import

pytestmark = pytest.mark.django_db


@pytest.fixture
def imports(alice):
    """fine (succeeded), broken (failed), halfway (partial), behind (late), shelved (paused
    and failed: a paused import is never late)."""
    made = {name: make_import(alice, SOURCE, name=name) for name in
            ("fine", "broken", "halfway", "behind", "shelved")}  # fmt: skip
    outcome = {"fine": "succeeded", "broken": "failed", "halfway": "partial",
               "behind": "succeeded", "shelved": "failed"}  # fmt: skip
    for name, status in outcome.items():
        ScheduledImport.objects.filter(pk=made[name].pk).update(last_run_status=status)
    overdue = timezone.now() - timedelta(hours=1)
    ScheduledImport.objects.filter(pk=made["behind"].pk).update(next_run_at=overdue)
    ScheduledImport.objects.filter(pk=made["shelved"].pk).update(
        status="paused", next_run_at=overdue
    )
    return made


def names(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {imp["name"] for imp in response.json()["results"]}


def test_imports_are_filtered_by_their_last_run_status(alice, imports):
    client = client_for(alice)

    assert names(client.get(f"{API}/imports/", {"last_run_status": "failed"})) == {
        "broken", "shelved",
    }  # fmt: skip
    assert names(client.get(f"{API}/imports/", {"last_run_status": ["failed", "partial"]})) == {
        "broken", "shelved", "halfway",
    }  # fmt: skip


def test_late_imports_are_those_the_api_calls_late(alice, imports):
    client = client_for(alice)

    late = client.get(f"{API}/imports/", {"late": "true"})
    on_time = client.get(f"{API}/imports/", {"late": "false"})

    assert names(late) == {"behind"}
    assert all(imp["late"] for imp in late.json()["results"])
    assert names(on_time) == {"fine", "broken", "halfway", "shelved"}


def test_needs_attention_lists_failed_partial_and_late_imports(alice, imports):
    response = client_for(alice).get(f"{API}/imports/", {"needs_attention": "true"})

    assert names(response) == {"broken", "halfway", "behind", "shelved"}


@pytest.mark.parametrize("word", ["1", "yes", "TRUE"])
def test_a_yes_or_no_filter_takes_the_words_dry_run_takes(alice, imports, word):
    # `?needs_attention=1` answered every import, as if each needed attention
    response = client_for(alice).get(f"{API}/imports/", {"needs_attention": word})

    assert names(response) == {"broken", "halfway", "behind", "shelved"}


def test_a_yes_or_no_filter_refuses_another_word_naming_the_ones_it_takes(alice, imports):
    response = client_for(alice).get(f"{API}/imports/", {"late": "maybe"})

    assert response.status_code == 400
    assert response.json()["errors"] == {
        "late": ["'maybe' is not one of: 1, true, yes, 0, false, no"]
    }


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_a_search_finds_a_name_however_its_accents_were_typed(alice, form):
    # Bug 9 of the API hunt: `café` typed decomposed (NFD), as macOS input methods and some
    # clients send it, found nothing; names are kept composed (NFC)
    make_import(alice, SOURCE, name="Café Preise", dataset="prices")
    make_import(alice, SOURCE, name="Cafe plain", dataset="plain")
    word = unicodedata.normalize(form, "café")

    found = names(client_for(alice).get(f"{API}/imports/", {"search": word}))

    assert found == {"Café Preise"}
