from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.contrib.auth import authenticate
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from common.views_base import JSONAPIView

from .services import token_create
from .throttle import LoginThrottle


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, trim_whitespace=False)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, write_only=True)


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
        if user is None or not user.is_active:  # logged by signals.py, as the admin's are
            raise serializers.ValidationError(
                {"non_field_errors": ["Unable to log in with provided credentials."]}
            )
        ttl = settings.LOGIN_TOKEN_TTL_SECONDS
        _, key = token_create(
            user=user, name="login", ttl=dt.timedelta(seconds=ttl) if ttl else None
        )
        return Response({"key": key})
