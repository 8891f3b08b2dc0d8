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

Not said of a database on this host (a Unix socket, `localhost` and its RFC 6761 kin
`*.localhost` and `localhost.localdomain`, a name /etc/hosts gives only loopback addresses, a
loopback address: any of 127.0.0.0/8, `::1`, `::ffff:127.x.y.z`), nor of a host named by one
label (`postgres`, a compose service or a cluster's service: a private network the operator
set up), nor when `verify-ca` or `verify-full` is set, nor `require` with a root certificate
(`sslrootcert`, PGSSLROOTCERT or ~/.postgresql/root.crt), which libpq then checks the server's
certificate against, as `verify-ca`. Where `hostaddr` (or PGHOSTADDR) is given, libpq connects
to it and uses `host` only as the name: the address decides. Before (says hunt), a remote
`host` with `hostaddr=127.0.0.1` was warned of at every start, `localhost` with
`hostaddr=10.1.2.3` was not, and `localhost.localdomain` and `::ffff:127.0.0.1` were.

A connection service (`?service=` or PGSERVICE) is read from the service file as libpq reads
it (PGSERVICEFILE or ~/.pg_service.conf, then PGSYSCONFDIR's pg_service.conf): what the URL
says wins, then the service, then the environment. Before (says review), a service naming a
remote host with `sslmode=prefer` was taken for a Unix socket and said nothing, and a list of
hosts was said with all its ports (`db2.example.com:5432,5433`).
"""

from __future__ import annotations

import configparser
import ipaddress
import logging
import os
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger("importbeat.database")

CHECKED = ("verify-ca", "verify-full")
LOCAL_NAMES = ("localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6")
HOSTS_FILE = "/etc/hosts"
# Where libpq looks for the system's service file when PGSYSCONFDIR is not set (Debian's and
# Ubuntu's libpq5; a libpq built from source: its own sysconfdir, which PGSYSCONFDIR names).
SYSTEM_SERVICE_FOLDER = "/etc/postgresql-common"


def _local(host: str) -> bool:
    """Whether `host` (a name, an address or a socket's folder) is this machine, or a one-label
    name of a private network."""
    host = host.strip().strip("[]").lower().rstrip(".")
    # A Unix socket's folder, or (Linux) an abstract one's `@name`.
    if not host or host.startswith(("/", "@")):
        return True
    if host in LOCAL_NAMES or host.endswith(".localhost"):
        return True
    if (address := _address(host)) is not None:
        return _loopback(address)
    # A name: one label (`postgres`) is a service of a network the operator runs.
    return "." not in host or host in _loopback_names()


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """`host` read as an IP address (an IPv6 one's `%zone` left out), None for a name."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def _loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, `::ffff:127.0.0.1` included, or the unspecified address (0.0.0.0, `::`), which
    a connection from this machine reaches this machine at."""
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback or (mapped or address).is_unspecified


def _loopback_names() -> set[str]:
    """The names the hosts file gives loopback addresses only (a distribution's
    `localhost.localdomain`, the machine's own name): read, not resolved, so no start waits on
    DNS."""
    addresses: dict[str, list[bool]] = {}
    try:
        with open(HOSTS_FILE, encoding="utf-8", errors="replace") as hosts:
            lines = hosts.read().splitlines()
    except OSError:
        return set()
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or (address := _address(fields[0])) is None:
            continue
        for name in fields[1:]:
            addresses.setdefault(name.lower().rstrip("."), []).append(_loopback(address))
    return {name for name, loopback in addresses.items() if all(loopback)}


def _reached(
    settings_dict: Mapping[str, Any], options: Mapping[str, Any], environ: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(name, where the connection goes) of each host libpq may connect to, in the list's
    order: `hostaddr`'s address where one is given (the name is then the `host` at its place,
    used for the certificate and the password file only), else the host itself."""
    # Django passes HOST to libpq, else the URL's `?host=` (its OPTIONS), else libpq reads
    # PGHOST: a `?host=db.example.com` with no host before the path was not said (review2).
    host = settings_dict.get("HOST") or options.get("host") or environ.get("PGHOST") or ""
    hosts = [name.strip() for name in str(host).split(",")]
    addresses = options.get("hostaddr") or environ.get("PGHOSTADDR") or ""
    if not addresses:
        return [(name, name) for name in hosts]
    reached = []
    for index, address in enumerate(str(addresses).split(",")):
        name = hosts[index] if index < len(hosts) else ""
        # An empty entry of hostaddr's list: that one host is reached by its name.
        address = address.strip()
        reached.append((name or address, address or name))
    return reached


def unchecked(
    settings_dict: Mapping[str, Any], environ: Mapping[str, str] = os.environ
) -> str | None:
    """The warning's words for Django's DATABASES entry, or None when there is nothing to say.
    libpq reads PGHOST and PGSSLMODE where the URL says nothing."""
    # The URL's options, then its service's (libpq: the connection string, the service file,
    # then the environment).
    options = {
        **_service(settings_dict.get("OPTIONS") or {}, environ),
        **(settings_dict.get("OPTIONS") or {}),
    }
    sslmode = str(options.get("sslmode") or environ.get("PGSSLMODE") or "prefer").lower()
    if sslmode in CHECKED or (sslmode == "require" and _root_certificate(options, environ)):
        return None
    reached = _reached(settings_dict, options, environ)
    remote = [index for index, (_name, to) in enumerate(reached) if not _local(to)]
    if not remote:
        return None
    name, to = reached[remote[0]]
    place = f"{_with_port(name, _port(settings_dict, options, environ, remote[0]))}"
    if name != to:
        place += f" (address {to})"
    what = {
        "require": "encrypts but checks no certificate",
        "disable": "does not encrypt",
    }.get(sslmode, "may not even encrypt, and checks no certificate")
    return (
        f"the database at {place} is reached with sslmode={sslmode}, which {what}: "
        "anyone on the network path can pose as the database and read or change what "
        "importbeat reads and writes; set sslmode=verify-full and sslrootcert in DATABASE_URL"
    )


def _port(
    settings_dict: Mapping[str, Any],
    options: Mapping[str, Any],
    environ: Mapping[str, str],
    index: int,
) -> str:
    """The port of the `index`th host: a list gives one port a host, or one for all."""
    port = settings_dict.get("PORT") or options.get("port") or environ.get("PGPORT") or 5432
    ports = [each.strip() for each in str(port).split(",")]
    return (ports[index] if index < len(ports) else ports[0]) or "5432"


def _with_port(host: str, port: str) -> str:
    """`host:port`, an IPv6 address in brackets (`[2001:db8::1]:5432`, not `2001:db8::1:5432`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _service(options: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """The settings of the connection service the URL (`service`) or PGSERVICE names, as libpq
    reads them: from the user's service file where it has that service, else the system's.
    Empty when none is named or found (libpq then refuses to connect, and says so)."""
    name = options.get("service") or environ.get("PGSERVICE")
    if not name:
        return {}
    home = os.path.join(os.path.expanduser("~"), ".pg_service.conf")
    folder = environ.get("PGSYSCONFDIR") or SYSTEM_SERVICE_FOLDER
    for path in (environ.get("PGSERVICEFILE") or home, os.path.join(folder, "pg_service.conf")):
        services = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            services.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue  # (libpq refuses such a file, and says so)
        if services.has_section(str(name)):
            return {key: value.strip() for key, value in services.items(str(name))}
    return {}


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
