"""knox tokens, as `Authorization: Token <key>` or `Bearer <key>` (SPEC section 5).

A module of its own: DRF imports its authentication classes while it defines APIView, so this
one must not import any view.
"""

from __future__ import annotations

from django.utils import timezone
from knox import auth
from knox.models import AuthToken
from knox.signals import token_expired
from rest_framework.request import Request


class TokenAuthentication(auth.TokenAuthentication):
    """knox's, without its sweep of the user's other tokens on every request.

    knox reads all the tokens of the user at each request, to delete the expired ones. Ours do
    not expire (REST_KNOX's TOKEN_TTL is None and every token is made without an expiry), so
    that sweep was a query finding nothing on every call, growing with the tokens a user holds
    (one per client or script). A token presented after its expiry is still refused and
    deleted, as knox does.
    """

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        if auth_token.expiry is None or auth_token.expiry >= timezone.now():
            return False
        username = auth_token.user.get_username()
        auth_token.delete()
        token_expired.send(sender=self.__class__, username=username, source="auth_token")
        return True


class BearerTokenAuthentication(TokenAuthentication):
    """The same knox tokens under the `Bearer` scheme, which most HTTP clients and API tools
    send by default. Listed after the `Token` class, so a 401 still challenges with `Token`."""

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"
