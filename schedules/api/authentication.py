"""`Authorization: Bearer <key>`, beside knox's `Token <key>` (SPEC section 5).

A module of its own: DRF imports its authentication classes while it defines APIView, so this
one must not import any view.
"""

from __future__ import annotations

from knox.auth import TokenAuthentication
from rest_framework.request import Request


class BearerTokenAuthentication(TokenAuthentication):
    """The same knox tokens under the `Bearer` scheme, which most HTTP clients and API tools
    send by default. Listed after knox's own class, so a 401 still challenges with `Token`."""

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"
