"""A server's URL without its scheme, or with another server's, stops every process at start,
naming the variable and the forms it takes, and not the password in it.

Bug (README hunt, finding 2): README "Configuration" says a value that cannot work stops every
process at start "with a line naming the variable". `EMAIL_URL=mail.example.com:25` (the scheme
left out) stopped them with django-environ's "Invalid email schema mail.example.com", which
named neither the variable nor what it takes. `DATABASE_URL=mysql2://…` started every process
on Django's MySQL engine, to fail at the first connection in a library's words;
`REDIS_URL=localhost:6379` started them all, to fail at the first lock; and
`CELERY_BROKER_URL=localhost:6379` was taken by kombu for the name of an AMQP server.
"""

from __future__ import annotations

import runpy

import pytest
from django.core.exceptions import ImproperlyConfigured

from tests.conftest import BASE_DIR

SETTINGS = str(BASE_DIR / "project" / "settings.py")


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        (
            "EMAIL_URL",
            "mail.example.com:25",
            r"^EMAIL_URL \(no scheme\) is no mail server URL: write smtp://user:password@host:25, "
            r"smtp\+tls://user:password@host:587 or smtp\+ssl://user:password@host:465$",
        ),
        ("EMAIL_URL", "smtpx://alice:s3cret@mail.example.com", r"^EMAIL_URL \(smtpx://\) is no"),
        (
            "DATABASE_URL",
            "mysql2://alice:s3cret@db.example.com/importbeat",
            r"^DATABASE_URL \(mysql2://\) is no PostgreSQL URL: write "
            r"postgres://user:password@host:5432/name$",
        ),
        ("DATABASE_URL", "db.example.com:5432/importbeat", r"^DATABASE_URL \(no scheme\) is no"),
        (
            "REDIS_URL",
            "localhost:6379",
            r"^REDIS_URL \(no scheme\) is no Redis URL: write redis://host:6379/0, "
            r"rediss://host:6380/0 or unix:///path/to/redis.sock$",
        ),
        ("REDIS_URL", "amqp://alice:s3cret@mq.example.com", r"^REDIS_URL \(amqp://\) is no"),
        (
            "CELERY_BROKER_URL",
            "alice:s3cret@localhost:6379",
            r"^CELERY_BROKER_URL has no scheme: write redis://host:6379/0 or "
            r"amqp://user:password@host$",
        ),
    ],
)
def test_a_server_url_that_is_no_url_stops_the_start_naming_it(monkeypatch, name, value, said):
    # Given an operator who wrote a server's URL without its scheme, or another server's
    monkeypatch.setenv(name, value)

    # When a process reads the settings
    # Then it stops naming the variable and the forms it takes
    with pytest.raises(ImproperlyConfigured, match=said) as stopped:
        runpy.run_path(SETTINGS)

    # And the password in the URL is not in the line
    assert "s3cret" not in str(stopped.value)


@pytest.mark.parametrize(
    ("name", "value", "setting", "taken"),
    [
        ("EMAIL_URL", "smtp+tls://alice:s3cret@mail.example.com:587", "EMAIL_PORT", 587),
        ("EMAIL_URL", "smtp+ssl://mail.example.com:465", "EMAIL_USE_SSL", True),
        ("DATABASE_URL", "postgresql://alice@db.example.com/ib", "DATABASE_URL", None),
        ("DATABASE_URL", "postgres://postgres@:5432/%2Ftmp%2Fs/ib", "DATABASE_URL", None),
        # (its certificate checked, said as every Redis client reads it: common/redis_tls.py)
        (
            "REDIS_URL",
            "rediss://redis.example.com:6380/0",
            "REDIS_URL",
            "rediss://redis.example.com:6380/0?ssl_cert_reqs=required",
        ),
        ("REDIS_URL", "unix:///run/redis/redis.sock", "REDIS_URL", None),
        ("CELERY_BROKER_URL", "amqp://alice:s3cret@mq.example.com//", "CELERY_BROKER_URL", None),
    ],
)
def test_a_server_url_in_a_form_it_takes_is_taken(monkeypatch, name, value, setting, taken):
    # Given a server's URL in one of the forms the README gives
    monkeypatch.setenv(name, value)

    # When a process reads the settings
    settings = runpy.run_path(SETTINGS)

    # Then it starts with it
    assert settings[setting] == (value if taken is None else taken)
