"""The private-address rule itself: which addresses are refused, and which hosts the operator
exempts. Settings only, no DNS, so that both ends of an import's life can apply it:
tasks.addresses to every address a fetch or a webhook resolves and connects to, and
schedules.validation to a host written as an address when the import is saved (an import
whose every run would be refused is better refused at once, while the user is there to read
why).

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
import re
import socket

from django.conf import settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
DEFAULT_PORTS = frozenset({80, 443})
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
SITE_LOCAL = ipaddress.ip_network("fec0::/10")
# What inet_aton reads as an IPv4 address: decimal, octal or hex numbers joined by dots.
_IPV4_NUMBERS = re.compile(r"[0-9][0-9a-fx.]*")


class BadAllowedEntry(ValueError):
    """An ALLOWED_PRIVATE_HOSTS entry whose port is neither a number nor `*`; each caller says
    it in its own error (a failed run, a refused save)."""


def normal_host(host: str) -> str:
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
        return normal_host(host), DEFAULT_PORTS
    if port == "*":
        return normal_host(host), None
    if not port.isdigit():
        raise BadAllowedEntry(f"ALLOWED_PRIVATE_HOSTS: {raw!r} has no valid port")
    return normal_host(host), frozenset({int(port)})


def is_allowed(host: str, port: int | None) -> bool:
    """Whether ALLOWED_PRIVATE_HOSTS exempts `host` (a name or an address) on `port`."""
    host = normal_host(host)
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


def literal_address(host: str) -> Address | None:
    """The address a host written as one stands for, read as the resolver reads it; None for a
    name.

    The resolver takes IPv4 shorthands too (`2130706433`, `127.1`, `0x7f.0.0.1`, `0177.0.0.1`
    are all 127.0.0.1): reading only the dotted quad would let them pass for names.
    """
    host = host.strip("[]").split("%")[0].lower()  # an IPv6 zone (`fe80::1%eth0`) names no host
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if not _IPV4_NUMBERS.fullmatch(host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def is_loopback_name(host: str) -> bool:
    """`localhost` and every name under it are this machine (RFC 6761), whatever DNS says."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def refused_on_sight(host: str, port: int | None) -> str | None:
    """Why the rule refuses `host` on `port` without a lookup, in plain words ("10.0.0.5 is a
    private address"); None for a public address, an exempt host, or a name only DNS answers.

    Names are not looked up here: DNS can answer otherwise by the time anything connects, so
    the check after the lookup, at connect time (tasks.addresses), stays the defence.
    Raises BadAllowedEntry when the operator's ALLOWED_PRIVATE_HOSTS holds a bad port.
    """
    if is_loopback_name(host):
        return None if is_allowed(host, port) else f"{host} is this machine's own name"
    address = literal_address(host)
    if address is None or is_public(address):
        return None
    if is_allowed(host, port) or is_allowed(str(address), port):
        return None
    if normal_host(host) == str(address):
        return f"{host} is a private address"
    return f"{host} is {address}, a private address"
