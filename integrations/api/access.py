"""Who may see and change which channel's failures.

Staff and superusers see every channel. Any other user sees the channels granted to them
(`ChannelGrant`, in the admin or with `manage.py grant`); a read-only grant lets them read. A
channel not granted answers exactly as one that does not exist: 404, on every endpoint.

The rule is written once, as conditions on the user (`may`): the regular views have the
database test them for the request's user, and the fast path's statements are compiled from
them (`may_sql`).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import BooleanField, Exists, Expression, ExpressionWrapper, OuterRef, Q
from django.db.models.expressions import Col

from common.database import compile_sql, inline_sql
from integrations.models import Channel, ChannelGrant

READ, WRITE = "read", "write"


def may(access: str, channel: int | Expression) -> Q:
    """On the user model: the user may read (READ) or change (WRITE) the records of `channel`,
    a channel's id or an expression of it."""
    grants = ChannelGrant.objects.filter(user=OuterRef("pk"), channel_id=channel)
    if access == WRITE:
        grants = grants.filter(can_write=True)
    return Q(is_staff=True) | Q(is_superuser=True) | Q(Exists(grants))


def may_sql(access: str, *, user_alias: str, channel_alias: str) -> str:
    """`may` as SQL on a user aliased `user_alias` and a channel aliased `channel_alias`."""
    user_model = get_user_model()
    channel_id = Col(channel_alias, Channel._meta.pk)
    sql, params = compile_sql(
        user_model, may(access, channel_id), user_alias, {user_model._meta.db_table: user_alias}
    )
    return inline_sql(sql, params)  # constants only (EXISTS selects a 1)


def channel_access(user: AbstractBaseUser, channel_id: int) -> str | None:
    """READ, WRITE, or None when the user may not know the channel."""
    allowed = {
        access: ExpressionWrapper(may(access, channel_id), output_field=BooleanField())
        for access in (READ, WRITE)
    }
    row = (
        get_user_model()
        .objects.filter(pk=user.pk)
        .annotate(**allowed)
        .values_list(WRITE, READ)
        .first()
    )
    if row is None or not row[1]:
        return None
    return WRITE if row[0] else READ
