"""The channels a user may see, a channel's settings and its grants.

* `GET /api/v1/channels/`: the channels the user may read, with the user's role on each;
  `POST` adds one (an admin of every channel).
* `GET /api/v1/channels/{id}/`: a channel's settings (any role on it); `PATCH` changes them
  (its admins). The signing secret is write-only: the answer says whether one is set and since
  when, never what it is.
* `/api/v1/channels/{id}/grants/` and `.../grants/{grant_id}/`: who has which role on the
  channel, managed by its admins. Roles on every channel are listed (their `channel` is null)
  but changed only where they are given (the `grant` command, the admin site).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.contrib.auth import get_user_model
from django.db.models import Q
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response

from common.exceptions import Conflict
from common.fields import format_datetime_utc
from common.pagination import paginated_response
from common.serializers import NOT_AN_OBJECT, StrictModelSerializer, StrictSerializer
from common.views_base import JSONAPIView
from integrations.api.access import (
    ACCESS_LEVELS,
    ADMIN,
    ROLE_OF,
    WRITE,
    may_everywhere,
    readable_channels,
)
from integrations.api.views import ChannelScopedView
from integrations.channels import services
from integrations.choices import ReasonType, Role
from integrations.dispatch.signing import signing_secrets
from integrations.models import MIN_SECRET_LENGTH, Channel, ChannelGrant, RetryPolicy

GRANT_NOT_FOUND = "Grant not found."


class RetryPolicySerializer(StrictModelSerializer):
    class Meta:
        model = RetryPolicy
        fields = ("auto_retry", "backoff", "backoff_factor", "max_delay", "jitter")


class RetryPoliciesField(serializers.Field):
    """`{reason_type: {settings to change} | null}`: null returns the reason type to the
    default policy."""

    def to_internal_value(self, data):
        if not isinstance(data, Mapping):
            raise serializers.ValidationError([NOT_AN_OBJECT.format(type=type(data).__name__)])
        changes, errors = {}, {}
        for reason, settings in data.items():
            if reason not in ReasonType.values:
                errors[reason] = [f"Not a reason type; one of: {', '.join(ReasonType.values)}."]
            elif settings is None:
                changes[reason] = None
            else:
                policy = RetryPolicySerializer(data=settings, partial=True)
                if policy.is_valid():
                    changes[reason] = policy.validated_data
                else:
                    errors[reason] = policy.errors
        if errors:
            raise serializers.ValidationError(errors)
        return changes


class ChannelSerializer(StrictModelSerializer):
    signing_secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_null=True,
        allow_blank=True,
        trim_whitespace=False,
        min_length=MIN_SECRET_LENGTH,
        max_length=Channel._meta.get_field("signing_secret").max_length,
    )
    retry_policies = RetryPoliciesField(required=False)

    class Meta:
        model = Channel
        fields = (*services.PLAIN_SETTINGS, "signing_secret", "retry_policies")


def channel_data(channel: Channel, role: str | None) -> dict:
    rotated = channel.secret_rotated_at
    signing = signing_secrets(channel)
    return {
        "id": channel.pk,
        "name": channel.name,
        "channel_type": channel.channel_type,
        "is_active": channel.is_active,
        "retry_endpoint": channel.retry_endpoint,
        "signing_secret": {
            "set": bool(channel.signing_secret),
            "rotated_at": format_datetime_utc(rotated),
            "previous_signs_until": (
                format_datetime_utc(channel.previous_secret_valid_until)
                if len(signing) > 1
                else None
            ),
        },
        "retry_policies": {
            reason: {
                **{name: getattr(policy, name) for name in policy.SETTINGS},
                "default": not own,
            }
            for reason, (policy, own) in services.channel_policies(channel).items()
        },
        "max_concurrency": channel.max_concurrency,
        "rate_limit": channel.rate_limit,
        "dispatch": services.dispatch_health(channel),
        "role": role,
        "created_date": format_datetime_utc(channel.created_date),
        "modified_date": format_datetime_utc(channel.modified_date),
    }


class GlobalAdminMayAdd(BasePermission):
    message = "Only an admin of every channel may add channels."

    def has_permission(self, request, view):
        return request.method in SAFE_METHODS or may_everywhere(request.user, ADMIN)


class ChannelListView(JSONAPIView):
    permission_classes = [*JSONAPIView.permission_classes, GlobalAdminMayAdd]

    def get(self, request):
        channels = readable_channels(request.user).order_by("pk")
        return paginated_response(
            request, channels, lambda channel: channel_data(channel, role_of(channel))
        )

    def post(self, request):
        serializer = ChannelSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        channel = Channel()
        services.channel_save(channel=channel, changes=serializer.validated_data, user=request.user)
        return Response(channel_data(channel, Role.ADMIN), status=status.HTTP_201_CREATED)


def role_of(channel: Channel) -> str:
    """The role that gives what `readable_channels` found the user may do on `channel`."""
    access = [level for level in ACCESS_LEVELS if getattr(channel, f"may_{level}")][-1]
    return ROLE_OF[access]


class ChannelDetailView(ChannelScopedView):
    needs = {"PATCH": ADMIN}

    def get(self, request, channel_id: int):
        return Response(channel_data(self.channel, ROLE_OF[self.access]))

    def patch(self, request, channel_id: int):
        serializer = ChannelSerializer(self.channel, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        services.channel_save(
            channel=self.channel, changes=serializer.validated_data, user=request.user
        )
        return Response(channel_data(self.channel, ROLE_OF[self.access]))


class ChannelHoldView(ChannelScopedView):
    """`POST .../pause/` holds the channel's dispatch (nothing is sent, retry counts untouched);
    `POST .../resume/` lifts the hold, and the backlog drains from a slow start."""

    needs = {"POST": WRITE}
    action_name = ""
    body_required = False

    def post(self, request, channel_id: int):
        if request.data:
            raise ValidationError({"body": ["Send no body (or {})."]})
        services.channel_hold(
            channel=self.channel, action=self.action_name, user=request.user, source="api"
        )
        self.channel.refresh_from_db()
        return Response(channel_data(self.channel, ROLE_OF[self.access]))


class GrantSerializer(StrictSerializer):
    user = serializers.SlugRelatedField(
        slug_field=get_user_model().USERNAME_FIELD,
        queryset=get_user_model().objects.all(),
        error_messages={"does_not_exist": "No user is named {value}."},
    )
    role = serializers.ChoiceField(choices=Role.choices)


def grant_data(grant: ChannelGrant) -> dict:
    return {
        "id": grant.pk,
        "user": grant.user.get_username(),
        "channel": grant.channel_id,
        "role": grant.role,
        "created_date": format_datetime_utc(grant.created_date),
    }


class ChannelGrantsView(ChannelScopedView):
    """Grants are a channel's admins' business, reads included."""

    needs = {method: ADMIN for method in ("GET", "POST", "PATCH", "DELETE")}

    def grants(self):
        return (
            ChannelGrant.objects.filter(Q(channel=self.channel) | Q(channel__isnull=True))
            .select_related("user")
            .order_by("pk")
        )

    def refuse_own(self, user) -> None:
        """Nobody changes their own role here: an admin cannot lock themselves out by mistake
        (another admin, or an admin of every channel, can)."""
        if user.pk == self.request.user.pk and not self.request.user.is_superuser:
            raise PermissionDenied("You cannot change your own role; ask another admin.")


class ChannelGrantListView(ChannelGrantsView):
    def get(self, request, channel_id: int):
        return paginated_response(request, self.grants(), grant_data)

    def post(self, request, channel_id: int):
        serializer = GrantSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        self.refuse_own(user)
        existing = ChannelGrant.objects.filter(user=user, channel=self.channel).first()
        if existing is not None:
            raise Conflict(
                f"{user.get_username()} has a role on this channel already: change grant "
                f"{existing.pk} instead."
            )
        grant = services.grant_save(
            grant=ChannelGrant(user=user, channel=self.channel),
            role=serializer.validated_data["role"],
            by=request.user,
        )
        return Response(grant_data(grant), status=status.HTTP_201_CREATED)


class GrantChangeSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class ChannelGrantDetailView(ChannelGrantsView):
    def get_grant(self, pk: int, *, changing: bool) -> ChannelGrant:
        grant = self.grants().filter(pk=pk).first()
        if grant is None:
            raise NotFound(GRANT_NOT_FOUND)
        if changing:
            if grant.channel_id is None:
                raise PermissionDenied(
                    "This is a role on every channel: it is changed where it was given (the "
                    "grant command or the admin site), not on one channel."
                )
            self.refuse_own(grant.user)
        return grant

    def get(self, request, channel_id: int, pk: int):
        return Response(grant_data(self.get_grant(pk, changing=False)))

    def patch(self, request, channel_id: int, pk: int):
        grant = self.get_grant(pk, changing=True)
        serializer = GrantChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        grant = services.grant_save(
            grant=grant, role=serializer.validated_data["role"], by=request.user
        )
        return Response(grant_data(grant))

    def delete(self, request, channel_id: int, pk: int):
        services.grant_delete(grant=self.get_grant(pk, changing=True), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
