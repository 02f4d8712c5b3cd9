"""Idempotent reports: `POST` of a failure or of a bulk batch with an `Idempotency-Key` header.

A channel app that timed out on a report cannot know whether it was stored; it sends it again
with the same key. Within IDEMPOTENCY_KEY_HOURS the repeat answers the first answer again (with
`Idempotent-Replayed: true`) and writes nothing; the same key with another body, or on the other
route, answers 422. Keys belong to the token's user and the channel.

The key's row is written in the transaction that inserts the records: either both are stored or
neither is. Of two concurrent requests with one key, the second's INSERT of the key waits on the
first's and fails once it commits; the second rolls its records back and answers the first's
answer. Only a 201 is kept: a report refused (400) may be sent again, corrected, with its key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response

from common.exceptions import Conflict, lost_connection
from common.renderers import JSONRenderer
from integrations.models import Channel, FailedIntegration, IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_LENGTH = IdempotencyKey._meta.get_field("key").max_length

logger = logging.getLogger("integrations.records.idempotency")


class KeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = (
        f"This {HEADER} was used with another request (another body or route); "
        "a repeat must send the same request, and a new request a new key."
    )
    default_code = "idempotency_key_reused"


class Repeated(Exception):
    """A concurrent request with the same key stored its records first."""


@dataclass(frozen=True)
class Key:
    user_id: int
    channel_id: int
    key: str
    fingerprint: str


def requested(request, channel: Channel, route: str) -> Key | None:
    """The request's key (None without the header); 400 naming the header when it is not a key.
    `route`: which report it is (a key of a single report repeated on bulk is another request)."""
    value = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if value is None:
        return None
    if not value or len(value) > MAX_LENGTH or not all(" " <= c <= "~" for c in value):
        raise ValidationError(
            {HEADER: [f"Ensure this header is 1 to {MAX_LENGTH} printable ASCII characters."]}
        )
    body = orjson.dumps(request.data, option=orjson.OPT_SORT_KEYS)
    fingerprint = hashlib.sha256(route.encode() + b"\n" + body).hexdigest()
    return Key(request.user.pk, channel.pk, value, fingerprint)


def _cutoff(now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)


def _rows(key: Key):
    return IdempotencyKey.objects.filter(
        user_id=key.user_id, channel_id=key.channel_id, key=key.key
    )


def claim(key: Key, records: list[FailedIntegration]) -> None:
    """Writes the key of `records` just inserted, in their transaction (raises Repeated when a
    concurrent request wrote it first: the caller's transaction is to roll back). A key past
    its retention is another key."""
    now = timezone.now()
    _rows(key).filter(created_at__lt=_cutoff(now)).delete()
    try:
        with transaction.atomic():
            IdempotencyKey.objects.create(
                user_id=key.user_id,
                channel_id=key.channel_id,
                key=key.key,
                fingerprint=key.fingerprint,
                record_ids=[record.pk for record in records],
                created_at=now,
            )
    except IntegrityError:
        raise Repeated() from None


def _json(body: bytes, **headers: str) -> HttpResponse:
    response = HttpResponse(body, content_type="application/json", status=status.HTTP_201_CREATED)
    for name, value in headers.items():
        response[name] = value
    return response


def earlier_answer(
    key: Key, render: Callable[[list[FailedIntegration]], dict | bytes]
) -> HttpResponse | None:
    """The first answer of `key` (None: the key is new); 422 when it was another request's."""
    row = _rows(key).filter(created_at__gte=_cutoff(timezone.now())).first()
    if row is None:
        return None
    if row.fingerprint != key.fingerprint:
        raise KeyReused()
    if row.answer is not None:
        return _json(row.answer.encode(), **{REPLAYED_HEADER: "true"})
    # Stored, but its answer was not written (the first request is still answering, or it
    # was lost after its commit): the records as they are now.
    by_pk = FailedIntegration.objects.in_bulk(row.record_ids)
    if len(by_pk) != len(row.record_ids):
        raise Conflict(f"The records stored with this {HEADER} have since been deleted.")
    return _json(
        _rendered(render([by_pk[pk] for pk in row.record_ids])), **{REPLAYED_HEADER: "true"}
    )


def _rendered(answer: dict | bytes) -> bytes:
    """An answer's JSON (`render` gives data, or JSON that the database wrote)."""
    return answer if isinstance(answer, bytes) else JSONRenderer().render(answer)


def report_once(
    key: Key | None,
    store: Callable[[Callable | None], list[FailedIntegration]],
    render: Callable[[list[FailedIntegration]], dict | bytes],
) -> HttpResponse | Response:
    """A report's 201: `store(claim)` stores its records (calling `claim` with them in their
    transaction), `render` gives the answer's data. With a key, once: a repeat answers the
    first answer again."""
    if key is None:
        answer = render(store(None))
        if isinstance(answer, bytes):
            return _json(answer)
        return Response(answer, status=status.HTTP_201_CREATED)
    for _ in range(3):
        earlier = earlier_answer(key, render)
        if earlier is not None:
            return earlier
        try:
            return _store_with(key, store, render)
        except Repeated:
            continue  # the other request's answer, committed, is the answer
    raise Conflict(f"Concurrent requests with this {HEADER}; send it again.")


def _store_with(key: Key, store, render) -> HttpResponse:
    records = store(lambda stored: claim(key, stored))
    body = _rendered(render(records))
    try:
        _rows(key).update(answer=body.decode())
    except DatabaseError as exc:
        # Stored all the same: a repeat answers the records as they are then.
        logger.warning(
            "the answer of an %s was not kept: %s", HEADER, exc, exc_info=not lost_connection(exc)
        )
    return _json(body)


def purge(*, now: dt.datetime | None = None) -> int:
    """Forgets the keys past their retention; answers how many."""
    deleted, _ = IdempotencyKey.objects.filter(
        created_at__lt=_cutoff(now or timezone.now())
    ).delete()
    return deleted
