"""An on/off switch takes 1/0, true/false, yes/no and on/off, in any case and with spaces
around, and what django-environ's `env.bool` took before it: `y`, `ok`, any whole number but 0
for on, a value set empty for off whatever the default; unset, it keeps its default.

Pins the words of `envbool` (project/settings.py, common.switches), which replaced `env.bool`
so that a typo is refused rather than taken for "off" (README hunt, finding 1): every word the
README writes must still be taken, and every value an existing deployment wrote keeps its
meaning (review: `DJANGO_SSL_REDIRECT=y` stopped the start, and `DJANGO_SECURE_COOKIES=`, off
before, turned secure cookies on without a word).
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
        ("y", True),
        ("OK", True),
        ("2", True),
        ("n", False),
        ("00", False),
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
def test_an_unset_switch_keeps_its_default(monkeypatch, name, setting, default):
    monkeypatch.delenv(name, raising=False)

    assert runpy.run_path(SETTINGS)[setting] is default


@pytest.mark.parametrize(
    ("name", "setting"),
    [
        ("DJANGO_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_INCLUDE_SUBDOMAINS"),
        ("DJANGO_SECURE_COOKIES", "SESSION_COOKIE_SECURE"),
    ],
)
def test_a_switch_set_empty_is_off_as_it_was(monkeypatch, name, setting):
    # Given a production deployment whose env file turned a switch off by leaving it empty
    monkeypatch.setenv("DJANGO_DEBUG", "0")
    monkeypatch.setenv("DJANGO_SECRET_KEY", "x" * 60)
    monkeypatch.setenv("DJANGO_ALLOWED_HOSTS", "example.com")
    monkeypatch.setenv(name, "")

    # When a process reads the settings
    # Then the switch is off, as it was before (its default is on)
    assert runpy.run_path(SETTINGS)[setting] is False
