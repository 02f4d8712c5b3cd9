from __future__ import annotations

import datetime as dt

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from .models import Token, generate_key, hash_key


def token_create(
    *, user: AbstractBaseUser, name: str = "", ttl: dt.timedelta | None = None
) -> tuple[Token, str]:
    """Creates a token; answers it and its key, which is shown this once and never stored."""
    key = generate_key()
    token = Token.objects.create(
        user=user,
        name=name,
        key_hash=hash_key(key),
        prefix=key[:8],
        expires_at=timezone.now() + ttl if ttl else None,
    )
    return token, key


def token_revoke(*, token: Token) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
