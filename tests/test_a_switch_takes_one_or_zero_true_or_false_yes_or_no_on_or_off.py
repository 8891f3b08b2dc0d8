"""An on/off switch takes 1/0, true/false, yes/no and on/off, in any case and with spaces
around; empty, it keeps its default.

Pins the words of `envbool` (project/settings.py, common.switches), which replaced
django-environ's `env.bool` so that a typo is refused rather than taken for "off" (README hunt,
finding 1): every word the README writes must still be taken.
"""

from __future__ import annotations

import runpy

import pytest

from tests.conftest import BASE_DIR

SETTINGS = str(BASE_DIR / "project" / "settings.py")


@pytest.mark.parametrize(
    ("value", "taken"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("False", False),
        ("YES", True),
        ("no", False),
        (" On ", True),
        ("off\n", False),
    ],
)
def test_a_switch_takes_each_word_for_on_or_off(monkeypatch, value, taken):
    # Given an operator's switch in one of the words it takes
    monkeypatch.setenv("DJANGO_SSL_REDIRECT", value)

    # When a process reads the settings
    # Then the switch is on or off as written
    assert runpy.run_path(SETTINGS)["SECURE_SSL_REDIRECT"] is taken


@pytest.mark.parametrize(
    ("name", "setting", "default"),
    [
        ("DJANGO_SSL_REDIRECT", "SECURE_SSL_REDIRECT", False),
        ("DJANGO_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", True),
        ("IMPORT_DROP_DIRS_SHARED", "IMPORT_DROP_DIRS_SHARED", False),
    ],
)
def test_an_empty_switch_keeps_its_default(monkeypatch, name, setting, default):
    # Given a switch set to nothing (compose passes an unset variable through empty)
    monkeypatch.setenv(name, "")

    # When a process reads the settings
    # Then it keeps the default the README gives
    assert runpy.run_path(SETTINGS)[setting] is default
