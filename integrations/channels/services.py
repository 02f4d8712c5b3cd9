"""A channel's settings and its grants, as the API changes them: what the admin site does with
its forms, by the same rules (the model's validators, `signing.rotate`, one grant per user and
channel).

Every change is logged with who made it and which settings changed (never a secret's value).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from integrations.choices import ReasonType
from integrations.dispatch import protection
from integrations.dispatch.signing import rotate
from integrations.lifecycle.policies import DEFAULT_POLICIES, Policy, forget_policies
from integrations.lifecycle.states import dispatch_held
from integrations.models import (
    Channel,
    ChannelDispatch,
    ChannelGrant,
    FailedIntegration,
    RetryPolicy,
)
from integrations.operations.audit import audit

logger = logging.getLogger(__name__)

# The settings of a channel that are its own columns, written as they are given.
PLAIN_SETTINGS = (
    "name",
    "channel_type",
    "is_active",
    "retry_endpoint",
    "max_concurrency",
    "rate_limit",
)
PAUSE, RESUME = "pause", "resume"


def channel_policies(channel: Channel) -> dict[str, tuple[Policy, bool]]:
    """Per reason type: the policy the channel's records are retried by, and whether it is the
    channel's own (else the default)."""
    own = {row.reason_type: Policy.of(row) for row in channel.retry_policies.all()}
    return {
        reason: (own.get(reason, DEFAULT_POLICIES[reason]), reason in own)
        for reason in ReasonType.values
    }


def channel_save(
    *, channel: Channel, changes: Mapping[str, Any], user: AbstractBaseUser
) -> list[str]:
    """Applies validated `changes` to `channel` (new or stored) and saves it; answers the names
    of the settings given.

    `signing_secret` replaces the secret (the previous one signs on for the overlap) or, empty
    or null, removes signing. `retry_policies` maps reason types to the settings of their
    policy to change (the rest stay) or to null (back to the default)."""
    with transaction.atomic():
        for name in PLAIN_SETTINGS:
            if name in changes:
                setattr(channel, name, changes[name])
        if "signing_secret" in changes:
            rotate(channel, changes["signing_secret"] or "")
        channel.save()
        for reason, settings in changes.get("retry_policies", {}).items():
            _policy_save(channel, reason, settings)
    if "retry_policies" in changes:
        forget_policies()
    names = sorted(changes)
    logger.info("channel %s settings changed by %s: %s", channel.pk, user, ", ".join(names))
    return names


def channel_hold(*, channel: Channel, action: str, user, source: str) -> None:
    """Pauses (`PAUSE`) or resumes (`RESUME`) the channel's dispatch (dispatch/protection.py),
    audited like every operator action."""
    by = user.get_username() if user is not None else source
    change = protection.pause if action == PAUSE else protection.resume
    change(channel, by=by)
    audit(user=user, channel_id=channel.pk, action=action, source=source, outcome="done")


def dispatch_health(channel: Channel, *, now=None, backlog=None) -> dict[str, Any]:
    """What the retry engine knows of the channel's app, and its backlog (the records due now,
    sent or held: `backlog`, when the caller has it)."""
    from django.utils import timezone

    from common.fields import format_datetime_utc
    from integrations.reads import selectors

    now = now or timezone.now()
    dispatch = ChannelDispatch.objects.filter(channel=channel).first() or ChannelDispatch(
        channel=channel
    )
    backlog = backlog or selectors.due_backlog(channel=channel, now=now)
    held = dispatch_held(channel, now)
    rate = protection.effective_rate(channel, dispatch, now)
    if dispatch.circuit == ChannelDispatch.Circuit.HALF_OPEN:
        rate = None
    in_flight = FailedIntegration.objects.filter(
        channel=channel, is_active=True, lease_expires_at__gt=now
    ).count()
    if dispatch.disabled_at:
        summary = "disabled"
    elif dispatch.paused_at:
        summary = "paused"
    elif not channel.retry_endpoint:
        summary = "no_endpoint"
    elif held:
        summary = "held"
    else:
        summary = "sending"
    waiting_until = dispatch.retry_after_until
    return {
        "state": summary,
        "circuit": dispatch.circuit,
        "circuit_since": format_datetime_utc(dispatch.circuit_since),
        "next_probe_at": format_datetime_utc(dispatch.next_probe_at),
        "consecutive_failures": dispatch.consecutive_failures,
        "asked_to_wait_until": format_datetime_utc(
            waiting_until if waiting_until and waiting_until > now else None
        ),
        "paused_at": format_datetime_utc(dispatch.paused_at),
        "paused_by": dispatch.paused_by,
        "disabled_at": format_datetime_utc(dispatch.disabled_at),
        "in_flight": in_flight,
        "send_window": protection.window_of(dispatch),
        "rate": _rounded(rate),
        "learned_rate": _rounded(protection.learned_rate(channel, dispatch, now)),
        "last_success_at": format_datetime_utc(dispatch.last_success_at),
        "last_failure_at": format_datetime_utc(dispatch.last_failure_at),
        "due": 0 if held else backlog.count,
        "held": backlog.count if held else 0,
        "oldest_due_age_seconds": (
            round((now - backlog.oldest).total_seconds(), 3) if backlog.oldest else None
        ),
        "drain_seconds_estimate": (
            round(backlog.count / rate, 1) if rate and backlog.count else None
        ),
    }


def _rounded(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 3)


def _policy_save(channel: Channel, reason: str, settings: Mapping[str, Any] | None) -> None:
    if settings is None:
        RetryPolicy.objects.filter(channel=channel, reason_type=reason).delete()
        return
    current, _ = channel_policies(channel)[reason]
    values = {name: settings.get(name, getattr(current, name)) for name in Policy.SETTINGS}
    RetryPolicy.objects.update_or_create(channel=channel, reason_type=reason, defaults=values)


def grant_save(*, grant: ChannelGrant, role: str, by: AbstractBaseUser) -> ChannelGrant:
    """Gives `grant` (new or stored) the role `role`."""
    created = grant.pk is None
    grant.role = role
    grant.save()
    logger.info(
        "%s %s %s on channel %s",
        by,
        "granted" if created else "changed to",
        f"{role} to {grant.user}" if created else f"{role} the role of {grant.user}",
        grant.channel_id,
    )
    return grant


def grant_delete(*, grant: ChannelGrant, by: AbstractBaseUser) -> None:
    grant.delete()
    logger.info(
        "%s removed the %s role of %s on channel %s", by, grant.role, grant.user, grant.channel_id
    )
