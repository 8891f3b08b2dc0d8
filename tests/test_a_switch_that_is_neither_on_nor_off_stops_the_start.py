"""A switch whose value is neither on nor off stops every process at start, naming the variable.

Bug (README hunt, finding 1): README "Configuration" says a value that cannot work stops every
process at start with a line naming the variable. The on/off settings were read with
django-environ's `env.bool`, which took any word it did not know for "off":
`DJANGO_SSL_REDIRECT=ture` (a typo) turned the redirect to HTTPS off, and
`DJANGO_SECURE_COOKIES=enabled` sent the session and CSRF cookies over plain HTTP, each process
starting without a word. Flower read `DJANGO_DEBUG` with words of its own: with `DJANGO_DEBUG=y`
Django ran in development mode while Flower refused to start without FLOWER_BASIC_AUTH (both
take it for on now).
"""

from __future__ import annotations

import runpy

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.conftest import BASE_DIR

SETTINGS = str(BASE_DIR / "project" / "settings.py")
FLOWERCONFIG = str(BASE_DIR / "flowerconfig.py")
WORDS = r"is neither on nor off: write 1 or 0 \(true/false, yes/no, on/off\)"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DJANGO_SSL_REDIRECT", "ture"),
        ("DJANGO_SECURE_COOKIES", "enabled"),
        ("DJANGO_HSTS_INCLUDE_SUBDOMAINS", "yes please"),
        ("DJANGO_HSTS_PRELOAD", "2.0"),
        ("IMPORT_DROP_DIRS_SHARED", "shared"),
        ("DJANGO_DEBUG", "yup"),
    ],
)
def test_a_switch_that_is_neither_on_nor_off_stops_the_start_naming_it(monkeypatch, name, value):
    # Given an operator's typo in an on/off setting
    monkeypatch.setenv(name, value)

    # When a process reads the settings
    # Then it stops, naming the variable and the words it takes, rather than taking it for "off"
    with pytest.raises(ImproperlyConfigured, match=f"^{name}='{value}' {WORDS}$"):
        runpy.run_path(SETTINGS)


def test_flower_stops_at_a_debug_switch_that_is_neither_on_nor_off(monkeypatch):
    # Given a DJANGO_DEBUG that Django's settings refuse
    monkeypatch.setenv("DJANGO_DEBUG", "okay")
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)

    # When Flower reads its configuration file
    # Then it stops with the settings' words, not with a demand for FLOWER_BASIC_AUTH
    with pytest.raises(SystemExit, match=f"^DJANGO_DEBUG='okay' {WORDS}$"):
        runpy.run_path(FLOWERCONFIG)


def test_flower_takes_the_settings_words_for_off(monkeypatch):
    # Given DJANGO_DEBUG off in words Django's settings take
    monkeypatch.setenv("DJANGO_DEBUG", " No ")
    monkeypatch.delenv("FLOWER_BASIC_AUTH", raising=False)

    # When Flower reads its configuration file
    # Then it is outside development, and asks for its credentials
    with pytest.raises(SystemExit, match=r"FLOWER_BASIC_AUTH \(user:password\) is required"):
        runpy.run_path(FLOWERCONFIG)
