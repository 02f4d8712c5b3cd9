"""Who may see and change which channel's failures: roles per channel.

A user's grant on a channel (or, without a channel, on every channel) gives one role:

* viewer: reads the channel's failures, counts and attempts;
* operator: also reports failures, edits and deletes records, runs the operator actions;
* admin: also the channel's settings (retry endpoint, signing secret, policies) and its grants.

Superusers may do everything everywhere. `is_staff` opens the admin site only, within the
Django permissions the user has; it gives no access to a channel through the API. A channel
the user may not read answers exactly as one that does not exist: 404, on every endpoint; a
write beyond the user's role answers 403.

The rule is written once, as conditions on the user (`may`): the regular views have the
database test them for the request's user, and the fast path's statements are compiled from
them (`may_sql`).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import (
    BooleanField,
    Exists,
    Expression,
    ExpressionWrapper,
    OuterRef,
    Q,
    QuerySet,
)
from django.db.models.expressions import Col

from common.database import compile_sql, inline_sql
from integrations.choices import Role
from integrations.models import Channel, ChannelGrant

# What a request needs, from the least to the most, and the role that gives it.
READ, WRITE, ADMIN = "read", "write", "admin"
ACCESS_LEVELS = (READ, WRITE, ADMIN)
ROLE_OF = {READ: Role.VIEWER, WRITE: Role.OPERATOR, ADMIN: Role.ADMIN}
# The roles that give each: its own and the ones above it.
ROLES_FOR = {
    access: tuple(ROLE_OF[level] for level in ACCESS_LEVELS[ACCESS_LEVELS.index(access) :])
    for access in ACCESS_LEVELS
}
# What a request beyond the user's role answers (403), by the access it needed.
BEYOND_ROLE = {
    WRITE: "Your access to this channel is read-only.",
    ADMIN: "Only an admin of this channel may do this.",
}


def allows(granted: str | None, needed: str) -> bool:
    """Whether access `granted` (`channel_access`'s answer) is at least `needed`."""
    return granted is not None and ACCESS_LEVELS.index(granted) >= ACCESS_LEVELS.index(needed)


def may(access: str, channel: int | Expression | None) -> Q:
    """On the user model: the user may `access` the records of `channel` (a channel's id or an
    expression of it; None: every channel, by a global role)."""
    grants = ChannelGrant.objects.filter(user=OuterRef("pk"), role__in=ROLES_FOR[access])
    if channel is None:
        grants = grants.filter(channel__isnull=True)
    else:
        grants = grants.filter(Q(channel_id=channel) | Q(channel__isnull=True))
    return Q(is_superuser=True) | Q(Exists(grants))


def may_sql(access: str, *, user_alias: str, channel_alias: str) -> str:
    """`may` as SQL on a user aliased `user_alias` and a channel aliased `channel_alias`."""
    user_model = get_user_model()
    channel_id = Col(channel_alias, Channel._meta.pk)
    sql, params = compile_sql(
        user_model, may(access, channel_id), user_alias, {user_model._meta.db_table: user_alias}
    )
    return inline_sql(sql, params)  # constants only (the roles; EXISTS selects a 1)


def channel_access(user: AbstractBaseUser, channel_id: int | None) -> str | None:
    """The most the user may do on the channel (None: every channel): READ, WRITE or ADMIN,
    or None when the user may not know it."""
    allowed = {
        access: ExpressionWrapper(may(access, channel_id), output_field=BooleanField())
        for access in ACCESS_LEVELS
    }
    row = (
        get_user_model()
        .objects.filter(pk=user.pk)
        .annotate(**allowed)
        .values_list(*ACCESS_LEVELS)
        .first()
    )
    if row is None:
        return None
    granted = [access for access, yes in zip(ACCESS_LEVELS, row, strict=True) if yes]
    return granted[-1] if granted else None


def may_everywhere(user: AbstractBaseUser, access: str) -> bool:
    """Whether the user may `access` every channel (a global role, or a superuser): what the
    service-wide settings, such as the known content types, need."""
    if not (user and user.is_authenticated):
        return False
    return get_user_model().objects.filter(pk=user.pk).filter(may(access, None)).exists()


def readable_channels(user) -> QuerySet[Channel]:
    """The channels `user` may read, each annotated with what the user may do on it."""
    me = get_user_model().objects.filter(pk=user.pk)
    # The channel is two queries out from the grant: the user's, then the channel's.
    channel = OuterRef(OuterRef("pk"))
    allowed = {
        f"may_{access}": ExpressionWrapper(
            Exists(me.filter(may(access, channel))), output_field=BooleanField()
        )
        for access in ACCESS_LEVELS
    }
    return Channel.objects.annotate(**allowed).filter(**{f"may_{READ}": True})
