"""Which addresses a fetch (or an alert's webhook) may connect to: the private-address rule
(common.addresses) applied to every address a host resolves to, when it connects.

The rule, its IPv6 forms and ALLOWED_PRIVATE_HOSTS are common.addresses's, shared with the
check at save (schedules.validation), which sees only hosts written as addresses; here every
name is resolved and each of its addresses judged.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from common import addresses as rule
from common.addresses import is_public, normal_host

from .errors import PermanentImportError, TransientImportError

SCHEME_PORTS = {"http": 80, "https": 443}


def is_allowed(host: str, port: int | None) -> bool:
    """Whether ALLOWED_PRIVATE_HOSTS exempts `host` (a name or an address) on `port`; an entry
    with a bad port fails the run, which says so."""
    try:
        return rule.is_allowed(host, port)
    except rule.BadAllowedEntry as error:
        raise PermanentImportError(str(error)) from None


def public_addresses(host: str, port: int | None = None) -> list[str] | None:
    """The addresses `host` resolves to, each checked; None when ALLOWED_PRIVATE_HOSTS names
    the host on that port.

    Raises PermanentImportError when any address is loopback, private, link-local or reserved
    (unless that address is itself allowed on that port).
    """
    host = normal_host(host)
    if is_allowed(host, port):
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        reason = (error.strerror or "the name server gave no answer").lower()
        raise TransientImportError(f"cannot resolve host {host!r}: {reason}") from error
    addresses = []
    for info in infos:
        text = info[4][0].split("%")[0]
        if not is_allowed(text, port) and not is_public(ipaddress.ip_address(text)):
            raise PermanentImportError(
                f"{host} resolves to {text}, a private address that is not allowed "
                f"(add it, with its port, to ALLOWED_PRIVATE_HOSTS to permit it)"
            )
        addresses.append(text)
    return addresses


def check_public_address(url: str) -> None:
    """Refuse URLs whose host resolves to a loopback, private, link-local or reserved address.

    Hosts listed in ALLOWED_PRIVATE_HOSTS for the URL's port are exempt.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or SCHEME_PORTS.get(parts.scheme)
    except ValueError:
        raise PermanentImportError(f"the URL's port is not valid: {url}") from None
    public_addresses(parts.hostname or "", port)
