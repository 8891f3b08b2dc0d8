"""How long a check of a source waits, the page for the worker (SOURCE_CHECK_WAIT_SECONDS) and
the worker for the source (SOURCE_CHECK_FETCH_SECONDS), is read from the environment; a pair
where the check's task could outlive the page's wait stops the start naming both.

They were constants (20 s and 12 s) that nothing could shorten: two tests waited them out."""

from __future__ import annotations

import runpy

import pytest
from django.core.exceptions import ImproperlyConfigured

from schedules import source_check
from tests.conftest import BASE_DIR

SETTINGS = str(BASE_DIR / "project" / "settings.py")


def test_both_are_read_from_the_environment(monkeypatch):
    # Given both set in the environment
    monkeypatch.setenv("SOURCE_CHECK_WAIT_SECONDS", "9")
    monkeypatch.setenv("SOURCE_CHECK_FETCH_SECONDS", "3")

    # When the settings are read
    read = runpy.run_path(SETTINGS)

    # Then they are the environment's
    assert (read["SOURCE_CHECK_WAIT_SECONDS"], read["SOURCE_CHECK_FETCH_SECONDS"]) == (9, 3)


def test_a_check_uses_them_in_its_words_and_its_time_limits(settings):
    # Given a shorter wait for the source
    settings.SOURCE_CHECK_WAIT_SECONDS, settings.SOURCE_CHECK_FETCH_SECONDS = 10, 4

    # Then what a check says and its task's limits follow it
    assert source_check.out_of_time().startswith("the source did not answer within 4 s,")
    assert source_check.time_limits() == (7, 9)
    assert source_check.wait_seconds() == 10


@pytest.mark.parametrize(
    ("wait", "fetch"),
    [("20", "0"), ("20", "15"), ("10", "12")],
)
def test_a_fetch_the_page_could_not_wait_for_stops_the_start(monkeypatch, wait, fetch):
    monkeypatch.setenv("SOURCE_CHECK_WAIT_SECONDS", wait)
    monkeypatch.setenv("SOURCE_CHECK_FETCH_SECONDS", fetch)

    with pytest.raises(ImproperlyConfigured, match="SOURCE_CHECK_FETCH_SECONDS must be at least 1"):
        runpy.run_path(SETTINGS)
