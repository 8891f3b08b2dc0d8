"""One WARNING at a process's start when its DATABASE_URL crosses a network with a TLS that
checks nothing.

libpq's default `sslmode` is `prefer`: it encrypts when the server offers it and checks no
certificate, and `require` checks none either (the tls hunt: a server with another name's
certificate was taken). Between importbeat and a database on another host, anyone on the path
can then pose as the database and read or change every run's rows; only `verify-ca` and
`verify-full` (with `sslrootcert`) check whom libpq talks to. Said once by the worker's start
(project.worker_checks), beat's (project.beat) and the web's (gunicorn.conf.py, in its
arbiter, from DATABASE_URL read as settings read it): from the settings alone, without a round
trip. In `common`: gunicorn's arbiter imports it without the Celery app `project` loads.

Not said of a database on this host (a Unix socket, `localhost`, a loopback address), nor of a
host named by one label (`postgres`, a compose service or a cluster's service: a private
network the operator set up), nor when `verify-ca` or `verify-full` is set, nor `require` with
a root certificate (`sslrootcert`, PGSSLROOTCERT or ~/.postgresql/root.crt), which libpq then
checks the server's certificate against, as `verify-ca`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("importbeat.database")

CHECKED = ("verify-ca", "verify-full")
LOCAL_NAMES = ("localhost",)


def _local(host: str) -> bool:
    """Whether `host` is this machine, or a one-label name of a private network."""
    host = host.strip().strip("[]")
    if not host or host.startswith("/") or host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        # A name: one label (`postgres`) is a service of a network the operator runs.
        return "." not in host


def unchecked(
    settings_dict: Mapping[str, Any], environ: Mapping[str, str] = os.environ
) -> str | None:
    """The warning's words for Django's DATABASES entry, or None when there is nothing to say.
    libpq reads PGHOST and PGSSLMODE where the URL says nothing."""
    options = settings_dict.get("OPTIONS") or {}
    sslmode = str(options.get("sslmode") or environ.get("PGSSLMODE") or "prefer").lower()
    if sslmode in CHECKED or (sslmode == "require" and _root_certificate(options, environ)):
        return None
    # Django passes HOST to libpq, else the URL's `?host=` (its OPTIONS), else libpq reads
    # PGHOST: a `?host=db.example.com` with no host before the path was not said (review2).
    host = settings_dict.get("HOST") or options.get("host") or environ.get("PGHOST") or ""
    hosts = str(host).split(",")
    remote = [host.strip() for host in hosts if not _local(host)]
    if not remote:
        return None
    port = settings_dict.get("PORT") or 5432
    what = (
        "encrypts but checks no certificate"
        if sslmode == "require"
        else "may not even encrypt, and checks no certificate"
    )
    return (
        f"the database at {remote[0]}:{port} is reached with sslmode={sslmode}, which {what}: "
        "anyone on the network path can pose as the database and read or change what "
        "importbeat reads and writes; set sslmode=verify-full and sslrootcert in DATABASE_URL"
    )


def _root_certificate(options: Mapping[str, Any], environ: Mapping[str, str]) -> bool:
    """Whether libpq finds a root certificate: with one, `sslmode=require` checks the server's
    certificate against it as `verify-ca` does (libpq's rule, kept for older clients), and
    `?sslmode=require&sslrootcert=…` was said to check none (review2)."""
    path = options.get("sslrootcert") or environ.get("PGSSLROOTCERT")
    path = str(path or os.path.join(os.path.expanduser("~"), ".postgresql", "root.crt"))
    return path == "system" or os.path.isfile(path)


def unchecked_url(url: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """`unchecked` of a DATABASE_URL, read as settings read it (django-environ)."""
    if not url:
        return None
    import environ as django_environ

    return unchecked(django_environ.Env.db_url_config(url), environ)


def say_if_unchecked() -> None:
    """The warning, once, for this process's DATABASES["default"]; a start-up note that never
    stops the start."""
    try:
        from django.conf import settings

        words = unchecked(settings.DATABASES.get("default") or {})
    except Exception as error:  # a note must never stop the start
        logger.debug("the database's TLS could not be read: %s", error)
        return
    if words:
        logger.warning("%s", words)
