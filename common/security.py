"""Who is on the other end of a request, and what a locked-out login answers.

Forwarded headers (`X-Forwarded-For`) are set by whoever sends the request: believed blindly,
they let a password guesser pose as a new address on every attempt. They are read only when the
connection itself comes from a proxy named in `TRUSTED_PROXIES` (addresses or networks), and
then only up to the first address that is not such a proxy, counted from the right: the hops a
trusted proxy appended, never what the client wrote before them.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry)


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def client_ip(request: HttpRequest) -> str:
    """The client's address: the peer, or the nearest untrusted hop a trusted proxy reported."""
    address = request.META.get("REMOTE_ADDR", "") or ""
    if not _trusted(address):
        return address
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        address = hop
        if not _trusted(hop):
            break
    return address


def lockout_response(
    request: HttpRequest, original: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """What a login attempt gets while its username or address is locked out (django-axes)."""
    minutes = max(1, round(settings.LOGIN_LOCKOUT_SECONDS / 60))
    message = (
        f"too many failed logins for this username or from this address; "
        f"try again in {minutes} minute{'s' if minutes != 1 else ''}"
    )
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"detail": message}, status=429)
    else:
        response = HttpResponse(message.capitalize() + ".", status=429, content_type="text/plain")
    response["Retry-After"] = str(settings.LOGIN_LOCKOUT_SECONDS)
    return response
