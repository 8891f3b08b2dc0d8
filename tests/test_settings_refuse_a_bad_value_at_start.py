"""A setting whose value cannot work stops every process at start, naming the variable and what
it takes, instead of starting and failing later: every request a 500 (a proxy written as a host
name, a rate DRF cannot read), each save of a credential a 500 (a key that is no Fernet key),
an interval import a 500 (`MIN_INTERVAL_SECONDS=0`), or a bare "invalid literal for int()".

A number out of its range too (README hunt, finding 2): `API_PAGE_SIZE=0` made every API list one
bare array of every row and `-5` a 404 for its first page, `LOGIN_FAILURE_LIMIT=0` locked every
login out with no failure at all, `MAX_TIMEOUT_SECONDS=0` refused every save of an import,
`RUN_RETENTION_DAYS=-1` let the hourly retention delete every finished run, and
`HEALTH_BROKER_TIMEOUT=0` reported the broker down at every health check; each process started
without a word."""

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
        ("API_PAGE_SIZE", "0", r"API_PAGE_SIZE must be at least 1 \(it is 0\)"),
        ("API_PAGE_SIZE", "-5", r"API_PAGE_SIZE must be at least 1 \(it is -5\)"),
        ("LOGIN_FAILURE_LIMIT", "0", "LOGIN_FAILURE_LIMIT must be at least 1"),
        ("LOGIN_LOCKOUT_SECONDS", "0", "LOGIN_LOCKOUT_SECONDS must be at least 1"),
        ("MAX_TIMEOUT_SECONDS", "0", "MAX_TIMEOUT_SECONDS must be at least 1"),
        ("RUN_RETENTION_DAYS", "-1", "RUN_RETENTION_DAYS must be at least 1"),
        ("FAILED_RUN_RETENTION_DAYS", "0", "FAILED_RUN_RETENTION_DAYS must be at least 1"),
        ("MAX_IMPORT_BYTES", "0", "MAX_IMPORT_BYTES must be at least 1"),
        ("MAX_FIELD_BYTES", "0", "MAX_FIELD_BYTES must be at least 1"),
        ("STALE_QUEUED_SECONDS", "0", "STALE_QUEUED_SECONDS must be at least 1"),
        ("RECONCILE_WINDOW_SECONDS", "0", "RECONCILE_WINDOW_SECONDS must be at least 1"),
        ("BEAT_MAX_LOOP_INTERVAL", "0", "BEAT_MAX_LOOP_INTERVAL must be at least 1"),
        ("HEALTH_BROKER_TIMEOUT", "0", "HEALTH_BROKER_TIMEOUT must be more than 0"),
        ("HEALTH_WORKER_PING_TIMEOUT", "-1", "HEALTH_WORKER_PING_TIMEOUT must be more than 0"),
        ("FETCH_READ_TIMEOUT_SECONDS", "0", "FETCH_READ_TIMEOUT_SECONDS must be more than 0"),
        ("EMAIL_TIMEOUT", "0", "EMAIL_TIMEOUT must be more than 0"),
        ("FILE_SETTLE_SECONDS", "-1", "FILE_SETTLE_SECONDS must be 0 or more"),
        ("HEALTH_WORKERS_MAX_AGE", "-1", "HEALTH_WORKERS_MAX_AGE must be 0 or more"),
        ("MAX_RUNNING_PER_OWNER", "-1", "MAX_RUNNING_PER_OWNER must be 0 or more"),
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


@pytest.mark.parametrize(
    "name",
    [
        "FILE_SETTLE_SECONDS",  # no wait
        "HEALTH_WORKERS_MAX_AGE",  # ask the workers at every call
        "MAX_RUNNING_PER_OWNER",  # no cap
        "FETCH_MIN_BYTES_PER_SECOND",  # no rate to keep
        "EMAIL_DIGEST_SECONDS",  # each e-mail at once
        "PROCESSED_FILE_RETENTION_DAYS",  # kept for ever
    ],
)
def test_a_zero_the_table_gives_a_meaning_is_taken(monkeypatch, name):
    monkeypatch.setenv(name, "0")

    assert runpy.run_path(SETTINGS)[name] == 0
