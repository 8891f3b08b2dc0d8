"""knox tokens, as `Authorization: Token <key>` or `Bearer <key>` (SPEC section 5).

A module of its own: DRF imports its authentication classes while it defines APIView, so this
one must not import any view.
"""

from __future__ import annotations

import binascii
from functools import cache
from hmac import compare_digest

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from knox import auth
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS, knox_settings
from knox.signals import token_expired
from rest_framework import exceptions
from rest_framework.request import Request

from schedules import rows

User = get_user_model()


class TokenAuthentication(auth.TokenAuthentication):
    """knox's, reading the presented token with its user in a statement written once, and
    without its sweep of the user's other tokens on every request.

    The token's read was a queryset compiled again for every API request: half of what an
    authenticated request that does nothing (`GET /me`) cost in CPU (issue 15). knox's checks
    are kept as they are, in its order: the token's key prefix, its expiry, its digest
    compared in constant time, the renewal when tokens expire, the user's being active.

    knox also reads all the tokens of the user at each request, to delete the expired ones.
    Ours do not expire (REST_KNOX's TOKEN_TTL is None and every token is made without an
    expiry), so that sweep was a query finding nothing on every call, growing with the tokens
    a user holds (one per client or script). A token presented after its expiry is still
    refused and deleted, as knox does.
    """

    # Set per request (DRF makes the authenticators for each): the caller asks `/health`.
    for_health = False

    def authenticate(self, request: Request) -> tuple[AbstractBaseUser, AuthToken] | None:
        self.for_health = _asks_health(request)
        return super().authenticate(request)

    def authenticate_credentials(self, token: bytes) -> tuple[AbstractBaseUser, AuthToken]:
        if not self.for_health:
            return self._look_up(token)
        # `/health` answers load balancers and monitors within seconds whatever the database
        # does; a staff token's lookup is bounded as its checks are (health3 hunt).
        from schedules.api import health

        return health.bounded_token_lookup(lambda: self._look_up(token))

    def _look_up(self, token: bytes) -> tuple[AbstractBaseUser, AuthToken]:
        message = _("Invalid token.")
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError:
            # Tokens are hex: a header with other bytes (`Token \xe9`) was a 500.
            raise exceptions.AuthenticationFailed(message) from None
        if "\x00" in token:
            raise exceptions.AuthenticationFailed(message)  # PostgreSQL refuses it: a 500
        with connection.cursor() as cursor:
            cursor.execute(_token_sql(), [token[: CONSTANTS.TOKEN_KEY_LENGTH]])
            found = cursor.fetchall()
        for row in found:
            auth_token, user = rows.instances(row, AuthToken, User)
            auth_token.user = user
            if self._cleanup_token(auth_token):
                continue
            try:
                digest = hash_token(token)
            except (TypeError, binascii.Error):
                raise exceptions.AuthenticationFailed(message) from None
            if compare_digest(digest, auth_token.digest):
                if knox_settings.AUTO_REFRESH and auth_token.expiry:
                    self.renew_token(auth_token)
                return self.validate_user(auth_token)
        raise exceptions.AuthenticationFailed(message)

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


def _asks_health(request: Request) -> bool:
    match = getattr(request._request, "resolver_match", None)
    return match is not None and match.url_name == "health"


@cache
def _token_sql() -> str:
    """A token with its user, by the token's key (a function: the models' columns are known
    once the app registry is ready)."""
    quote = connection.ops.quote_name
    return (
        f"SELECT {rows.columns(AuthToken, 't')}, {rows.columns(User, 'u')}"
        f" FROM {quote(AuthToken._meta.db_table)} t"
        f" JOIN {quote(User._meta.db_table)} u ON u.{quote(User._meta.pk.column)} = t.user_id"
        " WHERE t.token_key = %s"
    )
