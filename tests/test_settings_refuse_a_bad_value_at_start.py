"""A setting whose value cannot work stops every process at start, naming the variable and what
it takes, instead of starting and failing later: every request a 500 (a proxy written as a host
name, a rate DRF cannot read), each save of a credential a 500 (a key that is no Fernet key),
an interval import a 500 (`MIN_INTERVAL_SECONDS=0`), or a bare "invalid literal for int()"."""

from __future__ import annotations

import runpy

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.conftest import BASE_DIR

SETTINGS = str(BASE_DIR / "project" / "settings.py")


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("TRUSTED_PROXIES", "10.0.0.0/8,lb.internal", "'lb.internal' is not an IP address"),
        ("API_MANUAL_RUN_RATE", "30 per minute", "write it N/second, N/minute"),
        ("API_LOGIN_RATE", "20", "write it N/second, N/minute"),
        ("IMPORTBEAT_ENCRYPTION_KEY", "not-a-fernet-key", "key 1 is not a Fernet key"),
        ("MIN_INTERVAL_SECONDS", "0", "MIN_INTERVAL_SECONDS must be at least 1"),
        ("MAX_IMPORT_BYTES", "1GiB", "MAX_IMPORT_BYTES='1GiB' is not valid"),
        ("MAX_RUNNING_PER_OWNER", "x", "MAX_RUNNING_PER_OWNER='x' is not valid"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL='CHATTY': use DEBUG, INFO"),
    ],
)
def test_a_bad_value_stops_the_start_naming_its_variable(monkeypatch, name, value, said):
    monkeypatch.setenv(name, value)

    with pytest.raises(ImproperlyConfigured, match=said):
        runpy.run_path(SETTINGS)


def test_a_log_level_in_lower_case_is_taken(monkeypatch):
    # It stopped every process with "Unable to configure root logger"
    monkeypatch.setenv("LOG_LEVEL", "debug")

    assert runpy.run_path(SETTINGS)["LOGGING"]["root"]["level"] == "DEBUG"
