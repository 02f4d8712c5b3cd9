"""Bulk operator actions: strict about what they are asked, and never acting on more than was
asked.

* A request names its records with the list's filters, in the query string only; anything
  else there or in the body that is not an option (`dry_run`, `all`, `confirm`, `reset_count`,
  `canary`) answers 400 naming it (a misspelt filter must not widen the action to every
  record), and so does an action with no filter at all unless `all=true`.
* The records an action acts on are the ones its filters matched **when it was asked for**:
  their pks are kept (`BulkAction.pks`), and each batch acts on those of them that still match,
  so that records arriving or changing meanwhile are left alone and counted
  (`no_longer_matched`).
* A dry run keeps them as a preview and answers a `confirm` token: acting with it acts on the
  previewed records, and only those.
* Up to BULK_ACTION_SYNC_MAX records are acted on within the request; more are queued for the
  workers (`work_queued`), which act in transactions of BULK_ACTION_BATCH records (no row stays
  locked for long), record their progress with each batch, and resume one another's work when
  a lease lapses.
* A retry may ask for a **canary** (`canary=N`): N of the records are retried first; the rest
  are released (and then sent at the channel's rate, as due records are) only once all N
  succeeded. If one fails, the action ends (`failed`, saying which and why) and the rest are
  left as they were.
"""

from __future__ import annotations

import array
import datetime as dt
import hashlib
import logging
import re
import secrets
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models import F, Q
from django.http import QueryDict
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from common.fields import format_datetime_utc
from common.pagination import LIMIT_PARAM, PAGE_PARAM
from integrations.choices import AttemptOutcome
from integrations.lifecycle import transitions
from integrations.models import BulkAction, Channel, FailedIntegration, RetryAttempt
from integrations.operations.audit import audit, audit_finished
from integrations.reads.cursor import CURSOR_PARAM
from integrations.reads.filtersets import BooleanField
from integrations.reads.query import FILTERS, SORT_PARAM, ListQuery

logger = logging.getLogger(__name__)

OPTIONS = ("dry_run", "all", "confirm", "reset_count", "canary")
CANARY_MAX = 1000
LIST_ONLY = (PAGE_PARAM, LIMIT_PARAM, SORT_PARAM, CURSOR_PARAM)
# Filters that narrow nothing on their own (the URL's channel is always applied).
NOT_NARROWING = frozenset({"channel"})
SAMPLE_SIZE = 10

NOT_A_FILTER = "Unknown parameter: an action takes the list's filters (see /api/v1/openapi.json)."
LIST_PARAMETER = (
    "A list's parameter: an action applies to every record the filters match; leave it out."
)
FILTER_IN_BODY = "A filter: give it in the query string (?{name}=...), as for the list."
UNKNOWN_KEY = "Unknown field; the body takes dry_run, all, confirm, reset_count and canary."
NOT_A_CANARY = f"Must be a whole number of records from 1 to {CANARY_MAX}."
NO_FILTER = (
    "No filter given: an action on every record of the channel needs all=true (preview it "
    "first with dry_run=true)."
)
NOT_BOOLEAN = "Must be a boolean (true or false)."
GIVEN_TWICE = "Given in the query string and the body with different values."
RETRY_ONLY = "Applies to retry only."
CONFIRM_UNKNOWN = "Unknown or already used; preview again (dry_run=true)."


@dataclass(frozen=True)
class ActionRequest:
    action: str
    query: ListQuery
    filters: str  # the filters given, as a canonical query string
    dry_run: bool = False
    reset_count: bool = False
    everything: bool = False
    confirm: str | None = None
    canary: int = 0  # retry this many first; the rest once they all succeeded

    @property
    def narrowed(self) -> bool:
        return any(name not in NOT_NARROWING for name in self.query.filter_names)


def read_request(action: str, params: QueryDict, body: Any) -> ActionRequest:
    """The action request of a query string and a JSON body (`{}` when there is none); a 400
    naming each parameter or key that is not one it takes."""
    errors: dict[str, list[str]] = {}
    for name in params:
        if name in LIST_ONLY:
            errors[name] = [LIST_PARAMETER]
        elif name not in FILTERS and name not in OPTIONS:
            errors[name] = [NOT_A_FILTER]
    if not isinstance(body, Mapping):
        raise ValidationError(
            {"non_field_errors": [f"Expected an object, but got {type(body).__name__}."]}
        )
    for name in body:
        if name in FILTERS:
            errors[name] = [FILTER_IN_BODY.format(name=name)]
        elif name not in OPTIONS:
            errors[name] = [UNKNOWN_KEY]
    options: dict[str, Any] = {}
    for name in OPTIONS:
        value, problem = _option(name, params, body)
        if problem:
            errors[name] = [problem]
        options[name] = value
    if options["reset_count"] and action != "retry":
        errors["reset_count"] = [RETRY_ONLY]
    if options["canary"] and action != "retry":
        errors["canary"] = [RETRY_ONLY]
    if errors:
        raise ValidationError(errors)
    query = ListQuery.from_params(params)  # a bad filter value: a 400 naming it
    request = ActionRequest(
        action=action,
        query=query,
        filters=canonical_filters(params),
        dry_run=bool(options["dry_run"]),
        reset_count=bool(options["reset_count"]),
        everything=bool(options["all"]),
        confirm=options["confirm"] or None,
        canary=options["canary"] or 0,
    )
    if not (request.narrowed or request.everything or request.confirm):
        raise ValidationError({"all": [NO_FILTER]})
    if request.confirm and request.dry_run:
        raise ValidationError({"dry_run": ["A confirmation acts: leave dry_run out."]})
    return request


def _option(name: str, params: QueryDict, body: Mapping) -> tuple[Any, str | None]:
    """An option's value from the query string and the body (which must agree), and what is
    wrong with it."""
    values = []
    if name == "canary":
        return _canary(params, body)
    if name in params:
        raw = params.get(name)
        if name == "confirm":
            values.append(raw)
        elif raw.strip().lower() in BooleanField.VALUES:
            values.append(BooleanField.VALUES[raw.strip().lower()])
        else:
            return None, NOT_BOOLEAN
    if name in body:
        value = body[name]
        if name == "confirm":
            if not isinstance(value, str):
                return None, "Must be the confirm token of a dry run."
        elif not isinstance(value, bool):
            return None, NOT_BOOLEAN
        values.append(value)
    if len(values) == 2 and values[0] != values[1]:
        return None, GIVEN_TWICE
    return (values[0] if values else None), None


def _canary(params: QueryDict, body: Mapping) -> tuple[int | None, str | None]:
    values = []
    if "canary" in params:
        raw = params.get("canary").strip()
        if not re.fullmatch(r"[0-9]{1,18}", raw):  # str.isdigit() takes "²" and "٣"
            return None, NOT_A_CANARY
        values.append(int(raw))
    if "canary" in body:
        value = body["canary"]
        if not isinstance(value, int) or isinstance(value, bool):
            return None, NOT_A_CANARY
        values.append(value)
    if len(values) == 2 and values[0] != values[1]:
        return None, GIVEN_TWICE
    if values and not 1 <= values[0] <= CANARY_MAX:
        return None, NOT_A_CANARY
    return (values[0] if values else None), None


def canonical_filters(params: QueryDict) -> str:
    """The filters a query string gives (empty values are not given), in a canonical order."""
    pairs = sorted(
        (name, value) for name in params if name in FILTERS for value in params.getlist(name)
    )
    return urlencode([(name, value) for name, value in pairs if value != ""])


# --- the records' pks, kept compactly: ascending, as zlib-compressed 64-bit deltas


def pack(pks: Iterable[int]) -> tuple[bytes, int]:
    """The ascending `pks`, packed, and how many they are."""
    deltas, previous = array.array("q"), 0
    for pk in pks:
        deltas.append(pk - previous)
        previous = pk
    return zlib.compress(deltas.tobytes(), 1), len(deltas)


def unpack(packed: bytes) -> array.array:
    deltas = array.array("q")
    deltas.frombytes(zlib.decompress(bytes(packed)))
    total, pks = 0, array.array("q")
    for delta in deltas:
        total += delta
        pks.append(total)
    return pks


# --- asking, previewing, confirming


def matching(channel_id: int, query: ListQuery) -> Any:
    """The channel's records the filters match now (unordered)."""
    return query.apply(FailedIntegration.objects.filter(channel_id=channel_id)).order_by()


def _snapshot(channel: Channel, request: ActionRequest, *, now: dt.datetime) -> tuple[bytes, int]:
    """The pks of the records the request matches now (existing when it was asked for)."""
    pks = (
        matching(channel.pk, request.query)
        .filter(created_date__lte=now)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    return pack(pks.iterator(chunk_size=10_000))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ask(
    *, channel: Channel, user: AbstractBaseUser, request: ActionRequest, source: str
) -> tuple[int, dict]:
    """Answers (HTTP status, body) of an action request: a preview, the action done, or the
    action queued (202)."""
    if request.confirm:
        return _confirm(channel=channel, user=user, request=request, source=source)
    now = timezone.now()
    packed, total = _snapshot(channel, request, now=now)
    bulk = BulkAction(
        channel=channel,
        user=user if user.is_authenticated else None,
        action=request.action,
        filters=request.filters,
        reset_count=request.reset_count,
        canary=request.canary,
        pks=packed,
        total=total,
        created_at=now,
    )
    if request.dry_run:
        return 200, _preview(bulk, request=request, user=user, source=source)
    return _start(bulk, _begin(bulk), user=user, source=source)


def _preview(bulk: BulkAction, *, request: ActionRequest, user, source: str) -> dict:
    pks = unpack(bulk.pks)
    affected = _eligible_count(bulk, pks)
    token = secrets.token_urlsafe(24)
    bulk.status = BulkAction.Status.PREVIEWED
    bulk.token_hash = token_hash(token)
    bulk.expires_at = bulk.created_at + dt.timedelta(minutes=settings.BULK_ACTION_PREVIEW_MINUTES)
    bulk.save()
    audit(
        user=user,
        channel_id=bulk.channel_id,
        action=bulk.action,
        source=source,
        outcome="previewed",
        filters=bulk.filters,
        dry_run=True,
        reset_count=bulk.reset_count,
        matched=bulk.total,
        affected=affected,
        bulk_action=bulk,
    )
    return {
        "action": bulk.action,
        "matched": bulk.total,
        "affected": affected,
        "dry_run": True,
        "sample": list(pks[:SAMPLE_SIZE]),
        "canary": bulk.canary,
        "confirm": token,
        "confirm_expires_at": format_datetime_utc(bulk.expires_at),
    }


def _eligible_count(bulk: BulkAction, pks: array.array) -> int:
    """How many of the records the action would change (counted by batch of pks)."""
    count, size = 0, settings.BULK_ACTION_BATCH * 10
    for start in range(0, len(pks), size):
        chunk = FailedIntegration.objects.filter(
            channel_id=bulk.channel_id, pk__any_of=list(pks[start : start + size])
        )
        count += transitions.eligible_for(bulk.action, chunk).count()
    return count


def _confirm(
    *, channel: Channel, user: AbstractBaseUser, request: ActionRequest, source: str
) -> tuple[int, dict]:
    with transaction.atomic():
        bulk = (
            BulkAction.objects.select_for_update()
            .filter(
                token_hash=token_hash(request.confirm),
                status=BulkAction.Status.PREVIEWED,
                channel=channel,
                user_id=user.pk,
            )
            .first()
        )
        problem = _confirm_problem(bulk, request)
        if problem:
            raise ValidationError({"confirm": [problem]})
        bulk.token_hash = ""
        bulk.created_at = timezone.now()
        owner = _begin(bulk, changed=["token_hash", "created_at"])  # once, under the lock
    return _start(bulk, owner, user=user, source=source)


def _confirm_problem(bulk: BulkAction | None, request: ActionRequest) -> str | None:
    if bulk is None:
        return CONFIRM_UNKNOWN
    if bulk.expires_at is not None and bulk.expires_at <= timezone.now():
        return f"Expired at {format_datetime_utc(bulk.expires_at)}; preview again."
    if bulk.action != request.action:
        return f"Made for {bulk.action}, not {request.action}."
    if request.filters and request.filters != bulk.filters:
        return f"Made for other filters ({bulk.filters or 'none'}); leave them out or preview."
    if request.reset_count and not bulk.reset_count:
        return "Made without reset_count; preview again with it."
    if request.canary and request.canary != bulk.canary:
        return f"Made with canary={bulk.canary or 'none'}; preview again with it."
    return None


def _begin(bulk: BulkAction, *, changed: list[str] | None = None) -> str | None:
    """Saves the action to be done: queued for the workers when its records are many, else
    leased by this request as it is saved, so that no worker looking for queued actions takes
    it first (the request would answer before the work was done). Answers the request's lease
    owner (None: queued). `changed`: the fields to save of an action saved before (a confirmed
    preview); else it is saved whole."""
    owner = None
    if bulk.total > settings.BULK_ACTION_SYNC_MAX:
        bulk.status = BulkAction.Status.QUEUED
    else:
        owner, now = f"request:{secrets.token_hex(4)}", timezone.now()
        bulk.status, bulk.lease_owner, bulk.started_at = BulkAction.Status.RUNNING, owner, now
        bulk.lease_expires_at = now + dt.timedelta(seconds=settings.RETRY_LEASE_SECONDS)
    if changed is None:
        bulk.save()
    else:
        bulk.save(
            update_fields=[*changed, "status", "lease_owner", "lease_expires_at", "started_at"]
        )
    return owner


def _start(
    bulk: BulkAction, owner: str | None, *, user: AbstractBaseUser, source: str
) -> tuple[int, dict]:
    """Acts on the kept records at once (`owner`: this request's lease), or answers that the
    workers will (queued)."""
    audit(
        user=user,
        channel_id=bulk.channel_id,
        action=bulk.action,
        source=source,
        outcome=BulkAction.Status.QUEUED,
        filters=bulk.filters,
        reset_count=bulk.reset_count,
        matched=bulk.total,
        bulk_action=bulk,
    )
    if owner is None:
        return 202, {
            "action": bulk.action,
            "matched": bulk.total,
            "dry_run": False,
            "operation": operation_data(bulk),
        }
    work(bulk, owner=owner)
    bulk.refresh_from_db()
    return 200, {
        "action": bulk.action,
        "matched": bulk.total,
        "affected": bulk.affected,
        "no_longer_matched": bulk.no_longer_matched,
        "dry_run": False,
        "operation": operation_data(bulk),
    }


# --- the work, in batches


def _lease(bulk: BulkAction, owner: str) -> bool:
    now = timezone.now()
    taken = BulkAction.objects.filter(
        Q(status=BulkAction.Status.QUEUED)
        | Q(status=BulkAction.Status.RUNNING, lease_expires_at__lt=now),
        pk=bulk.pk,
    ).update(
        status=BulkAction.Status.RUNNING,
        lease_owner=owner,
        lease_expires_at=now + dt.timedelta(seconds=settings.RETRY_LEASE_SECONDS),
        started_at=now if bulk.started_at is None else bulk.started_at,
    )
    return taken == 1


class LeaseLost(Exception):
    pass


def work(bulk: BulkAction, *, owner: str, until: float | None = None) -> bool:
    """Acts on the kept records from where the work stands, a batch a transaction, while
    `owner` holds the lease (and, with `until`, until that `time.monotonic()`); answers whether
    the work is finished."""
    bulk.refresh_from_db()
    pks = unpack(bulk.pks)
    query = ListQuery.from_params(QueryDict(bulk.filters))
    size = settings.BULK_ACTION_BATCH
    if bulk.canary and bulk.canary_started_at is None:
        _retry_canaries(bulk, pks, query, owner=owner)
        return False
    canaries = set(unpack(bulk.canary_pks)) if bulk.canary_pks else set()
    try:
        while bulk.processed < bulk.total:
            if until is not None and time.monotonic() >= until:
                # Its turn is over: back in the queue, its progress kept.
                BulkAction.objects.filter(pk=bulk.pk, lease_owner=owner).update(
                    status=BulkAction.Status.QUEUED, lease_owner="", lease_expires_at=None
                )
                return False
            chunk = list(pks[bulk.processed : bulk.processed + size])
            with transaction.atomic():
                still = matching(bulk.channel_id, query).filter(pk__any_of=chunk)
                matched = still.count()
                if canaries:  # retried already, as the canaries
                    still = still.exclude(pk__in=[pk for pk in chunk if pk in canaries])
                affected = transitions.act(
                    bulk.action,
                    transitions.eligible_for(bulk.action, still),
                    now=timezone.now(),
                    reset_count=bulk.reset_count,
                )
                lease = timezone.now() + dt.timedelta(seconds=settings.RETRY_LEASE_SECONDS)
                kept = BulkAction.objects.filter(
                    pk=bulk.pk, lease_owner=owner, status=BulkAction.Status.RUNNING
                ).update(
                    processed=F("processed") + len(chunk),
                    affected=F("affected") + affected,
                    no_longer_matched=F("no_longer_matched") + len(chunk) - matched,
                    lease_expires_at=lease,
                )
                if not kept:
                    raise LeaseLost
            bulk.refresh_from_db()
    except LeaseLost:
        return False
    except Exception as error:
        _end(bulk, owner, BulkAction.Status.FAILED, error=f"{type(error).__name__}: {error}")
        raise
    _end(bulk, owner, BulkAction.Status.DONE)
    return True


def _retry_canaries(bulk: BulkAction, pks: array.array, query: ListQuery, *, owner: str) -> None:
    """Retries the first `canary` of the kept records that still match and may be retried;
    the rest wait (status `canary`) until `check_canaries` releases them."""
    now = timezone.now()
    chosen: list[int] = []
    size = settings.BULK_ACTION_BATCH
    with transaction.atomic():
        for start in range(0, len(pks), size):
            chunk = list(pks[start : start + size])
            still = matching(bulk.channel_id, query).filter(pk__any_of=chunk)
            eligible = transitions.eligible_for(bulk.action, still).order_by("pk")
            chosen += list(eligible.values_list("pk", flat=True)[: bulk.canary - len(chosen)])
            if len(chosen) >= bulk.canary:
                break
        affected = transitions.act(
            bulk.action,
            FailedIntegration.objects.filter(pk__in=chosen),
            now=now,
            reset_count=bulk.reset_count,
        )
        BulkAction.objects.filter(pk=bulk.pk, lease_owner=owner).update(
            status=BulkAction.Status.CANARY,
            canary_pks=pack(chosen)[0],
            canary_started_at=now,
            affected=F("affected") + affected,
            lease_owner="",
            lease_expires_at=None,
        )
    logger.info("bulk action %s: %s canaries retried, the rest wait", bulk.pk, len(chosen))


def canary_outcome(bulk: BulkAction) -> dict[str, list[int]]:
    """The canaries' pks by outcome since they were retried: succeeded, failed, waiting."""
    pks = list(unpack(bulk.canary_pks)) if bulk.canary_pks else []
    finished = (
        RetryAttempt.objects.filter(
            failed_integration_id__in=pks,
            started_at__gte=bulk.canary_started_at,
            finished_at__isnull=False,
        )
        .exclude(outcome__in=[AttemptOutcome.THROTTLED, AttemptOutcome.LEASE_LOST])
        .values_list("failed_integration_id", "outcome")
    )
    succeeded, failed = set(), set()
    for pk, outcome in finished:
        (succeeded if outcome == AttemptOutcome.SUCCESS else failed).add(pk)
    failed -= succeeded  # a record that failed and then succeeded passed
    return {
        "succeeded": sorted(succeeded),
        "failed": sorted(failed),
        "waiting": sorted(set(pks) - succeeded - failed),
    }


def check_canaries(bulk: BulkAction) -> str:
    """Releases the rest of a canary retry when every canary succeeded (at the channel's rate:
    they are due like any record), or ends it when one failed, the rest left as they were."""
    outcome = canary_outcome(bulk)
    if outcome["failed"]:
        first = FailedIntegration.objects.filter(pk=outcome["failed"][0]).first()
        why = first.last_error if first is not None else ""
        error = (
            f"{len(outcome['failed'])} of {bulk.canary} canaries failed (record "
            f"{outcome['failed'][0]}: {why[:200]}); the other records were left as they were."
        )
        ended = BulkAction.objects.filter(pk=bulk.pk, status=BulkAction.Status.CANARY).update(
            status=BulkAction.Status.FAILED, finished_at=timezone.now(), error=error
        )
        if ended:
            bulk.refresh_from_db()
            audit_finished(bulk)
        return BulkAction.Status.FAILED
    if not outcome["waiting"]:
        BulkAction.objects.filter(pk=bulk.pk, status=BulkAction.Status.CANARY).update(
            status=BulkAction.Status.QUEUED
        )
        return BulkAction.Status.QUEUED
    return BulkAction.Status.CANARY


def _end(bulk: BulkAction, owner: str, status: str, *, error: str = "") -> None:
    ended = BulkAction.objects.filter(pk=bulk.pk, lease_owner=owner).update(
        status=status,
        finished_at=timezone.now(),
        lease_owner="",
        lease_expires_at=None,
        error=error,
    )
    if ended:
        bulk.refresh_from_db()
        audit_finished(bulk)


def work_queued(*, worker: str, seconds: float = 2.0) -> int:
    """A worker's turn: takes the oldest queued bulk action (or one whose lease lapsed) and
    works on it for about `seconds`; answers how many batches' worth of records it processed.
    Canary retries whose canaries have all answered are released or ended first."""
    for waiting in BulkAction.objects.filter(status=BulkAction.Status.CANARY):
        check_canaries(waiting)
    now = timezone.now()
    with transaction.atomic():
        waiting = BulkAction.objects.filter(
            Q(status=BulkAction.Status.QUEUED)
            | Q(status=BulkAction.Status.RUNNING, lease_expires_at__lt=now)
        ).order_by("created_at")
        if connection.features.has_select_for_update_skip_locked:
            waiting = waiting.select_for_update(skip_locked=True)
        bulk = waiting.first()
        if bulk is None or not _lease(bulk, worker):
            return 0
    before = bulk.processed
    work(bulk, owner=worker, until=time.monotonic() + seconds)
    bulk.refresh_from_db()
    return bulk.processed - before


def purge(*, now: dt.datetime | None = None) -> int:
    """Forgets previews past their expiry and the kept pks of actions finished a day ago (the
    action itself stays, as the audit log's)."""
    now = now or timezone.now()
    expired, _ = BulkAction.objects.filter(
        status=BulkAction.Status.PREVIEWED, expires_at__lt=now
    ).delete()
    BulkAction.objects.filter(
        status__in=[BulkAction.Status.DONE, BulkAction.Status.FAILED],
        finished_at__lt=now - dt.timedelta(days=1),
    ).exclude(pks=b"").update(pks=b"")
    return expired


def operation_data(bulk: BulkAction) -> dict:
    return {
        "id": bulk.pk,
        "action": bulk.action,
        "status": bulk.status,
        "filters": bulk.filters,
        "reset_count": bulk.reset_count,
        "canary": _canary_data(bulk),
        "total": bulk.total,
        "processed": bulk.processed,
        "affected": bulk.affected,
        "no_longer_matched": bulk.no_longer_matched,
        "created_at": format_datetime_utc(bulk.created_at),
        "started_at": format_datetime_utc(bulk.started_at),
        "finished_at": format_datetime_utc(bulk.finished_at),
        "error": bulk.error,
        "user": bulk.user.get_username() if bulk.user_id else None,
        "url": f"/api/v1/channel/{bulk.channel_id}/operations/{bulk.pk}/",
    }


def _canary_data(bulk: BulkAction) -> dict | None:
    if not bulk.canary:
        return None
    counts = {"size": bulk.canary, "started_at": format_datetime_utc(bulk.canary_started_at)}
    if bulk.canary_started_at is not None:
        counts |= {name: len(pks) for name, pks in canary_outcome(bulk).items()}
    return counts


def previewed(token: str) -> BulkAction | None:
    """The preview a confirm token was given for, while it waits to be confirmed."""
    return BulkAction.objects.filter(
        token_hash=token_hash(token), status=BulkAction.Status.PREVIEWED
    ).first()
