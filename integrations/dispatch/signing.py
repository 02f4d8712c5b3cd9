"""How retry requests are signed, and how a channel's signing secret is replaced.

A request carries `X-Signature: sha256=<hex>`: HMAC-SHA256 with the channel's secret over
`<X-Timestamp>.<body>`. A secret is write-only: it is set or replaced (`rotate`), never shown
again. So that a channel app can switch to a new secret without losing attempts, the previous
secret goes on signing beside the new one for SIGNING_SECRET_OVERLAP_HOURS: the header then
carries both signatures, comma-separated (`sha256=<new>,sha256=<previous>`); a receiver accepts
the request if any of them is valid.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from django.conf import settings
from django.utils import timezone

from integrations.models import Channel

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 with `secret` over `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signing_secrets(channel: Channel, *, now: dt.datetime | None = None) -> tuple[str, ...]:
    """The secrets that sign the channel's requests now: its own, and the previous one while
    the rotation's overlap lasts."""
    now = now or timezone.now()
    secrets = [channel.signing_secret] if channel.signing_secret else []
    until = channel.previous_secret_valid_until
    if channel.previous_signing_secret and until is not None and now < until:
        secrets.append(channel.previous_signing_secret)
    return tuple(secrets)


def signature_header(secrets: tuple[str, ...], timestamp: str, body: bytes) -> str:
    return ",".join(sign(secret, timestamp, body) for secret in secrets)


def valid_signature(header: str, secret: str, timestamp: str, body: bytes) -> bool:
    """Whether one of the header's signatures is `secret`'s (a receiver's check)."""
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(given.strip(), expected) for given in header.split(","))


def rotate(channel: Channel, secret: str, *, now: dt.datetime | None = None) -> None:
    """Makes `secret` the channel's secret (not saved); the one it replaces keeps signing for
    the overlap. An empty `secret` removes signing at once, the previous secret with it."""
    now = now or timezone.now()
    if secret == channel.signing_secret:
        return
    if secret and channel.signing_secret:
        overlap = dt.timedelta(hours=settings.SIGNING_SECRET_OVERLAP_HOURS)
        channel.previous_signing_secret = channel.signing_secret
        channel.previous_secret_valid_until = now + overlap
    else:
        channel.previous_signing_secret, channel.previous_secret_valid_until = "", None
    channel.signing_secret = secret
    channel.secret_rotated_at = now


def secret_status(channel: Channel, *, now: dt.datetime | None = None) -> str:
    """What may be shown of the channel's secrets: whether they are set, and since when."""
    now = now or timezone.now()
    if not channel.signing_secret:
        return "not set: requests are not signed"
    text = "set"
    if channel.secret_rotated_at:
        text += f" (since {channel.secret_rotated_at:%Y-%m-%d %H:%M} UTC)"
    if len(signing_secrets(channel, now=now)) > 1:
        text += (
            f"; the previous secret also signs until "
            f"{channel.previous_secret_valid_until:%Y-%m-%d %H:%M} UTC"
        )
    return text
