"""A test attempt: a signed ping to a channel's retry endpoint, by the rules of every attempt
(the endpoint's, the signature's, the timeout's), recorded nowhere but the audit log."""

from __future__ import annotations

import secrets

import orjson
from django.conf import settings

from integrations.dispatch.poster import Poster
from integrations.dispatch.signing import signing_secrets
from integrations.dispatch.worker import AttemptResult, post_outcome, signed_headers
from integrations.models import Channel


def send_ping(channel: Channel) -> AttemptResult:
    """POSTs `{"event": "ping"}` to the channel's retry endpoint, signed as attempts are."""
    body = orjson.dumps({"event": "ping", "channel": channel.pk})
    headers = signed_headers(
        body, signing_secrets(channel), idempotency_key=f"ping-{secrets.token_hex(8)}"
    )
    poster = Poster(timeout=settings.RETRY_TIMEOUT_SECONDS)
    try:
        return post_outcome(poster, channel.retry_endpoint, body, headers)
    finally:
        poster.close()
