"""Tokens: `POST /auth/token` (username + password) issues one; logout revokes it.

django-rest-knox stores only a hash of each token; a user may hold several (one per client)
and revoke the current one (`POST /auth/logout`) or all (`POST /auth/logoutall`). A token is
sent as `Authorization: Token <key>` or, as OAuth-style clients do, `Bearer <key>`.
"""

from __future__ import annotations

from django.contrib.auth import authenticate
from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox.models import AuthToken
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .authentication import BearerTokenAuthentication, TokenAuthentication
from .body_fields import check_body_fields
from .filters import check_query_params
from .parsers import JSONParser
from .serializers import LoginSerializer, TokenSerializer
from .throttles import LoginThrottle


class TokenScheme(KnoxTokenScheme):
    """knox's `Token` scheme in the OpenAPI schema, for our subclass of its authentication."""

    target_class = TokenAuthentication


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents the Bearer scheme in the OpenAPI schema beside knox's `Token` one."""

    target_class = BearerTokenAuthentication
    name = "bearerToken"

    def get_security_definition(self, auto_schema) -> dict:
        return build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix="Bearer"
        )


@extend_schema(tags=["auth"])
class TokenView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]
    # `curl -d username=...&password=...` sends a form: a login is accepted either way.
    parser_classes = [JSONParser, FormParser]

    def get_authenticate_header(self, request: Request) -> str:
        # Wrong credentials answer 401 (with this challenge), not DRF's 403 fallback.
        return "Token"

    @extend_schema(
        request=LoginSerializer,
        responses={
            201: TokenSerializer,
            401: OpenApiResponse(description="wrong username or password"),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        """Exchange a username and password for a new API token (shown once)."""
        check_query_params(request, set())
        login = LoginSerializer(data=request.data)
        login.is_valid(raise_exception=True)
        user = authenticate(request._request, **login.validated_data)
        if user is None or not user.is_active:
            raise AuthenticationFailed("wrong username or password")
        instance, token = AuthToken.objects.create(user=user, expiry=None)
        body = {"token": token, "expiry": instance.expiry, "username": user.get_username()}
        return Response(TokenSerializer(body).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["auth"])
class LogoutView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        """Revoke the token this request was made with."""
        check_query_params(request, set())
        check_body_fields(request.data, ())
        request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["auth"])
class LogoutAllView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        """Revoke every token of the user."""
        check_query_params(request, set())
        check_body_fields(request.data, ())
        request.user.auth_token_set.all().delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
