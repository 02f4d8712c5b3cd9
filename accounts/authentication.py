"""`Authorization: Token <key>`, as the original API takes it."""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from .models import Token, hash_key

KEYWORD = "Token"


def key_from_header(header: str) -> str:
    """The key of an `Authorization: Token <key>` header; AuthenticationFailed when malformed."""
    parts = header.split()
    if not parts or parts[0].lower() != KEYWORD.lower():
        raise exceptions.AuthenticationFailed(
            _("Invalid authorization header. Expected 'Token <key>'.")
        )
    if len(parts) == 1:
        raise exceptions.AuthenticationFailed(_("Invalid token header. No credentials provided."))
    if len(parts) > 2:
        raise exceptions.AuthenticationFailed(
            _("Invalid token header. Token string should not contain spaces.")
        )
    key = parts[1]
    if len(key) > 200 or not key.isascii() or not key.isprintable():
        raise exceptions.AuthenticationFailed(_("Invalid token."))
    return key


# The conditions under which a token (alias t) of a user (alias u) authenticates; the fast read
# path checks them in SQL, TokenAuthentication below in Python, with a message for each.
AUTHENTICATES_SQL = (
    "t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()) AND u.is_active"
)


class TokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        return self.authenticate_credentials(key_from_header(header))

    def authenticate_credentials(self, key: str):
        try:
            token = Token.objects.select_related("user").get(key_hash=hash_key(key))
        except Token.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(_("Token has been revoked."))
        if token.expires_at is not None and token.expires_at <= timezone.now():
            raise exceptions.AuthenticationFailed(_("Token has expired."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token

    def authenticate_header(self, request):
        return KEYWORD
