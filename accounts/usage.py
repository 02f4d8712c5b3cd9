"""When each token was last used: written at most once a minute per token, so that an operator
can tell a live key from a forgotten one without a write on every request."""

from __future__ import annotations

import datetime as dt
import logging
import time

from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from .models import Token

logger = logging.getLogger(__name__)

RESOLUTION = dt.timedelta(minutes=1)
# key hash -> when this process last wrote (or found fresh) the token's last use (monotonic).
_noted: dict[str, float] = {}
_NOTED_MAX = 10_000


def note_use(key_hash: str, *, last_used_at: dt.datetime | None = None) -> None:
    """Records that the token authenticated a request now, unless its last use is recorded
    less than a minute ago (`last_used_at`, when the caller read it; else this process's own
    memory, then the database's condition). Never fails the request: the answer matters more
    than the bookkeeping."""
    now = timezone.now()
    if last_used_at is not None and now - last_used_at < RESOLUTION:
        return
    seen = _noted.get(key_hash)
    if seen is not None and time.monotonic() - seen < RESOLUTION.total_seconds():
        return
    if len(_noted) >= _NOTED_MAX:
        _noted.clear()
    _noted[key_hash] = time.monotonic()
    try:
        Token.objects.filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - RESOLUTION),
            key_hash=key_hash,
        ).update(last_used_at=now)
    except DatabaseError:
        logger.warning("recording a token's last use failed", exc_info=True)


def forget_uses() -> None:
    """Forgets this process's memory of recorded uses (tests)."""
    _noted.clear()


# key hash -> the token's user's name, for the log lines of requests the fast path answers (a
# token's user never changes; its validity is checked by each request's own statement).
_usernames: dict[str, str] = {}


def token_username(key_hash: str) -> str | None:
    name = _usernames.get(key_hash)
    if name is None:
        name = (
            Token.objects.filter(key_hash=key_hash).values_list("user__username", flat=True).first()
        )
        if name is None:
            return None
        if len(_usernames) >= _NOTED_MAX:
            _usernames.clear()
        _usernames[key_hash] = name
    return name
