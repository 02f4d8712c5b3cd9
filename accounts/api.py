from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.contrib.auth import authenticate
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

from common.logs import bounded
from common.views_base import JSONAPIView

from .services import token_create

# Enough of a username to tell attempts apart; a password typed there is not logged whole.
USERNAME_SHOWN = 32

logger = logging.getLogger("accounts.login")


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, trim_whitespace=False)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, write_only=True)


class LoginThrottle(SimpleRateThrottle):
    """LOGIN_RATE attempts per client address, shared by every process (database cache)."""

    scope = "login"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginView(JSONAPIView):
    """`POST {"username", "password"}` answers `{"key": "..."}`, a new token for the user."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginThrottle]

    def post(self, request):
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        user = authenticate(
            request=request._request,
            username=username,
            password=serializer.validated_data["password"],
        )
        if user is None or not user.is_active:
            logger.warning(
                "failed login for username %s from %s",
                bounded(username, USERNAME_SHOWN),
                request.META.get("REMOTE_ADDR"),
            )
            raise serializers.ValidationError(
                {"non_field_errors": ["Unable to log in with provided credentials."]}
            )
        ttl = settings.LOGIN_TOKEN_TTL_SECONDS
        _, key = token_create(
            user=user, name="login", ttl=dt.timedelta(seconds=ttl) if ttl else None
        )
        return Response({"key": key})
