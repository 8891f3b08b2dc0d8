"""The TLS options of a Redis URL, read one way for every Redis client importbeat has.

A `rediss://` URL speaks TLS, and its server's certificate is checked by default: signed by a
trusted CA (the system's, or the file `ssl_ca_certs` names) and naming the URL's host, as a
browser and libpq's `sslmode=verify-full` check. `ssl_cert_reqs=none` is the explicit way out.

Each library read the same URL its own way: kombu (the broker: worker, beat, the web process's
sends, Flower) took a `rediss://` URL without `ssl_cert_reqs` for "check nothing", and connected
to any server posing as Redis, with a warning in the log only; redis-py (locks, leases, caches,
throttles, /health) checked the certificate; Celery's result backend refused to start without
`ssl_cert_reqs`; and `ssl_cert_reqs=CERT_REQUIRED`, the form Celery's documentation shows,
failed every redis-py client ("Invalid SSL Certificate Requirements Flag"). Settings now
rewrite each Redis URL into one form all three read alike (`canonical`): its TLS options
checked, `ssl_cert_reqs` always said, in the words all three take.
"""

from __future__ import annotations

import os
import ssl
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# The options a Redis URL may carry about TLS, each in the query string:
CERT_REQS = "ssl_cert_reqs"  # required (default) | optional | none
CA_CERTS = "ssl_ca_certs"  # a PEM file of the CAs to trust (default: the system's)
CHECK_HOSTNAME = "ssl_check_hostname"  # true (default) | false
CERTFILE, KEYFILE = "ssl_certfile", "ssl_keyfile"  # a client certificate, when Redis asks one
OPTIONS = (CERT_REQS, CA_CERTS, CHECK_HOSTNAME, CERTFILE, KEYFILE)
FILES = (CA_CERTS, CERTFILE, KEYFILE)

_VERIFY = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


class TlsOptionError(ValueError):
    """A Redis URL's TLS option that cannot be honoured; its message names the option."""


def options(url: str) -> dict[str, Any]:
    """The TLS options of a Redis URL as redis-py's connection, kombu's `broker_use_ssl` and
    Celery's `redis_backend_use_ssl` take them; empty for a `redis://` or `unix://` URL.
    Raises TlsOptionError for an option that cannot be honoured."""
    scheme = urlsplit(url).scheme
    given = {key: value for key, value in parse_qsl(urlsplit(url).query) if key.startswith("ssl")}
    if scheme != "rediss":
        if given:
            raise TlsOptionError(
                f"{', '.join(sorted(given))} given on a {scheme}:// URL, which does not speak "
                "TLS: write rediss://"
            )
        return {}
    if unknown := sorted(set(given) - set(OPTIONS)):
        raise TlsOptionError(
            f"{', '.join(unknown)}: no such TLS option of a rediss:// URL "
            f"(it takes {', '.join(OPTIONS)})"
        )
    words = given.get(CERT_REQS, "required").lower().removeprefix("cert_")
    if words not in _VERIFY:
        raise TlsOptionError(f"{CERT_REQS}={given[CERT_REQS]}: write required, optional or none")
    found: dict[str, Any] = {CERT_REQS: _VERIFY[words]}
    check = given.get(CHECK_HOSTNAME, "true").lower()
    if check not in _BOOLEANS:
        raise TlsOptionError(f"{CHECK_HOSTNAME}={given[CHECK_HOSTNAME]}: write true or false")
    if words == "none" or not _BOOLEANS[check]:
        # Said even with `none` (where redis-py checks no name anyway): kombu's own default for
        # a URL without options is {ssl_cert_reqs: CERT_NONE} alone, which the broker's
        # transport turns into a checked certificate (project.broker_transport).
        found[CHECK_HOSTNAME] = False
    for key in FILES:
        if key in given:
            path = given[key]
            if not os.path.isfile(path) or not os.access(path, os.R_OK):
                raise TlsOptionError(f"{key}={path}: no such file can be read here")
            found[key] = path
    if (CERTFILE in found) != (KEYFILE in found):
        raise TlsOptionError(f"{CERTFILE} and {KEYFILE} go together: give both or neither")
    return found


def canonical(url: str) -> str:
    """`url` with its TLS options written as redis-py, kombu and Celery all read them alike:
    `ssl_cert_reqs` always said (`required` unless the URL said otherwise), in lowercase words.
    Other URLs are returned as they are. Raises TlsOptionError as `options` does."""
    found = options(url)
    if not found:
        return url
    parts = urlsplit(url)
    kept = [(key, value) for key, value in parse_qsl(parts.query) if not key.startswith("ssl")]
    said = {value: words for words, value in _VERIFY.items()}
    written = [(CERT_REQS, said[found[CERT_REQS]])]
    if CHECK_HOSTNAME in found:
        written.append((CHECK_HOSTNAME, "false"))
    written += [(key, found[key]) for key in FILES if key in found]
    return urlunsplit(parts._replace(query=urlencode(kept + written, safe="/")))
