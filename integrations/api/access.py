"""Who may see and change which channel's failures.

Staff and superusers see every channel. Any other user sees the channels granted to them
(`ChannelGrant`, in the admin or with `manage.py grant`); a read-only grant lets them read. A
channel not granted answers exactly as one that does not exist: 404, on every endpoint.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from integrations.models import ChannelGrant

READ, WRITE = "read", "write"

# The same rule in SQL, for the fast read path: the user (alias u) may read channel (alias c).
MAY_READ_SQL = (
    "(u.is_staff OR u.is_superuser OR EXISTS ("
    "SELECT 1 FROM integrations_channelgrant g WHERE g.user_id = u.id AND g.channel_id = c.id))"
)

# ... and may change its records (a read-write grant).
MAY_WRITE_SQL = (
    "(u.is_staff OR u.is_superuser OR EXISTS ("
    "SELECT 1 FROM integrations_channelgrant g "
    "WHERE g.user_id = u.id AND g.channel_id = c.id AND g.can_write))"
)


def sees_every_channel(user: AbstractBaseUser) -> bool:
    return bool(user.is_staff or user.is_superuser)


def channel_access(user: AbstractBaseUser, channel_id: int) -> str | None:
    """READ, WRITE, or None when the user may not know the channel."""
    if sees_every_channel(user):
        return WRITE
    can_write = (
        ChannelGrant.objects.filter(user=user, channel_id=channel_id)
        .values_list("can_write", flat=True)
        .first()
    )
    if can_write is None:
        return None
    return WRITE if can_write else READ
