"""`Authorization: Token <key>`, as the original API takes it."""

from __future__ import annotations

from django.db.models import BooleanField, ExpressionWrapper, Q
from django.db.models.functions import Now
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from common.database import compile_sql

from .models import Token, hash_key
from .usage import note_use

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


# When a token authenticates: each condition, and what the answer says when it is not met.
# TokenAuthentication has the database test them with the token's lookup; the fast path runs
# the SQL compiled from them (`authenticates_sql`).
TOKEN_CONDITIONS: tuple[tuple[str, Q], ...] = (
    (_("Token has been revoked."), Q(revoked_at__isnull=True)),
    (_("Token has expired."), Q(expires_at__isnull=True) | Q(expires_at__gt=Now())),
    (_("User inactive or deleted."), Q(user__is_active=True)),
)


def authenticates_sql(token_alias: str, user_alias: str) -> str:
    """The conditions as SQL on a token aliased `token_alias` and its user `user_alias`."""
    condition = Q()
    for _message, rule in TOKEN_CONDITIONS:
        condition &= rule
    user_table = Token._meta.get_field("user").related_model._meta.db_table
    sql, params = compile_sql(Token, condition, token_alias, {user_table: user_alias})
    assert not params, "the token's conditions take no parameters"
    return sql


class TokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        return self.authenticate_credentials(key_from_header(header))

    def authenticate_credentials(self, key: str):
        met = {
            f"condition_{number}": ExpressionWrapper(rule, output_field=BooleanField())
            for number, (_message, rule) in enumerate(TOKEN_CONDITIONS)
        }
        try:
            token = Token.objects.select_related("user").annotate(**met).get(key_hash=hash_key(key))
        except Token.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        for number, (message, _rule) in enumerate(TOKEN_CONDITIONS):
            if not getattr(token, f"condition_{number}"):
                raise exceptions.AuthenticationFailed(message)
        note_use(token.key_hash, last_used_at=token.last_used_at)
        return token.user, token

    def authenticate_header(self, request):
        return KEYWORD
