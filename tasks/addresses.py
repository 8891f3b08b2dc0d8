"""Which addresses a fetch (or an alert's webhook) may connect to: the private-address rule.

Loopback, private, link-local (169.254.169.254, the cloud metadata address), CGNAT,
unique-local, site-local and reserved addresses are refused, and so are IPv6 forms that carry
such an IPv4 address: IPv4-mapped (`::ffff:0:0/96`), IPv4-translated (`::ffff:0:0:0/96`),
IPv4-compatible (`::/96`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`), 6to4 (`2002::/16`) and
Teredo (`2001::/32`) are judged by the IPv4 address inside, which is where the packets go.

`ALLOWED_PRIVATE_HOSTS` exempts entries by host name or address and port: `host:port`,
`[v6]:port`, `host:*` for every port, and a bare host for its default ports (80, 443) only,
so that naming a host does not open its database or admin ports as well.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

from .errors import PermanentImportError, TransientImportError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = frozenset({80, 443})
SCHEME_PORTS = {"http": 80, "https": 443}
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
SITE_LOCAL = ipaddress.ip_network("fec0::/10")


def _normal_host(host: str) -> str:
    host = host.strip().strip("[]").lower()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _entry(raw: str) -> tuple[str, frozenset[int] | None]:
    """(host, ports) of one ALLOWED_PRIVATE_HOSTS entry; ports None means every port."""
    entry = raw.strip().lower()
    host, port = entry, ""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    if not port:
        return _normal_host(host), DEFAULT_PORTS
    if port == "*":
        return _normal_host(host), None
    if not port.isdigit():
        raise PermanentImportError(f"ALLOWED_PRIVATE_HOSTS: {raw!r} has no valid port")
    return _normal_host(host), frozenset({int(port)})


def is_allowed(host: str, port: int | None) -> bool:
    """Whether ALLOWED_PRIVATE_HOSTS exempts `host` (a name or an address) on `port`."""
    host = _normal_host(host)
    for raw in settings.ALLOWED_PRIVATE_HOSTS:
        if not raw.strip():
            continue
        name, ports = _entry(raw)
        if name == host and (ports is None or (port or 443) in ports):
            return True
    return False


def carried_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address, where the traffic ends
    last = ipaddress.IPv4Address(address.packed[-4:])
    if any(address in network for network in NAT64):
        return last
    if address in IPV4_TRANSLATED or address in IPV4_COMPATIBLE:
        return last  # `::1` too: its IPv4 form, 0.0.0.1, is not public either
    return None


def is_public(address: Address) -> bool:
    # is_global is False for loopback, RFC 1918, link-local, CGNAT and unique-local addresses;
    # Python counts site-local IPv6 as global, though it is a private range.
    if isinstance(address, ipaddress.IPv6Address) and address in SITE_LOCAL:
        return False
    if (inner := carried_ipv4(address)) is not None:
        return inner.is_global and not inner.is_multicast
    return address.is_global and not address.is_multicast


def public_addresses(host: str, port: int | None = None) -> list[str] | None:
    """The addresses `host` resolves to, each checked; None when ALLOWED_PRIVATE_HOSTS names
    the host on that port.

    Raises PermanentImportError when any address is loopback, private, link-local or reserved
    (unless that address is itself allowed on that port).
    """
    host = _normal_host(host)
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
