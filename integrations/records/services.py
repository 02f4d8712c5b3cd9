"""Writes of the API, the admin and the commands: reports of failures (single and bulk), updates,
deletes and the operator actions. The retry worker's own writes (claims, outcomes, events) are
in `worker`; the transitions of the life cycle they share are in `engine`."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from operator import attrgetter
from typing import Any

import orjson
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, connection, transaction
from django.db.models import BooleanField, Q
from django.db.models.base import ModelState
from django.db.models.expressions import RawSQL
from django.db.models.sql.subqueries import UpdateQuery
from django.utils import timezone
from rest_framework.exceptions import NotFound, ValidationError

from common.database import Slot, bind, fetchall_prepared, fetchone, is_postgresql
from common.exceptions import InvalidBody, lost_connection
from integrations.lifecycle import policies, transitions
from integrations.models import Channel, FailedIntegration
from integrations.records.representation import CHANNEL_SQL, JSON_COLUMNS
from integrations.records.validation import check_references, validate_item

logger = logging.getLogger("integrations.records.services")

FAILED_INTEGRATION_NOT_FOUND = "Failed integration not found."


def validated(payload: Any, *, channel_id: int, partial: bool = False) -> dict[str, Any]:
    values, errors = validate_item(payload, channel_id=channel_id, partial=partial)
    if not errors:
        errors = check_references([values], channel_id=channel_id)[0]
    if errors:
        raise ValidationError(errors)
    return values


# Called with the records just inserted, in their transaction (an Idempotency-Key's claim).
Claim = Callable[[list[FailedIntegration]], None] | None


def failed_integration_create(
    *, channel: Channel, payload: Any, claim: Claim = None
) -> FailedIntegration:
    """Validates a channel app's report of one failure and records it (scheduled for retry by
    its policy; superseding older failures of the same object, or superseded by a newer one)."""
    values = validated(payload, channel_id=channel.pk)
    records = new_records(channel.pk, [values], now=timezone.now())
    return _record(records, channel=channel, claim=claim)[0]


def _record(
    records: list[FailedIntegration],
    *,
    channel: Channel,
    claim: Claim = None,
    shows_errors: bool | None = None,
) -> list[FailedIntegration]:
    """Inserts the records (all or none, with what `claim` writes), then supersedes older
    failures of their objects. With `shows_errors`, on PostgreSQL, each record stored as
    inserted holds its answer (`STORED_JSON`; see `_insert_many`).

    The supersede runs after the insert has committed, as a statement of its own: whichever of
    two concurrent reports of one object runs it last sees both, so no lock is needed for the
    newest to be the one left active.
    """
    now = records[0].created_date
    policies.schedule(records, now=now)
    if claim is None:
        _insert(records, shows_errors=shows_errors)
    else:
        with transaction.atomic():
            _insert(records, shows_errors=shows_errors)
            claim(records)
    if supersede_recorded(channel.pk, records, now=now):
        transitions.refresh_life_cycle(records)
        for record in records:  # answered as they were inserted, no longer as they are
            record.__dict__.pop(STORED_JSON, None)
    return records


# The columns a new record's INSERT writes: all but the pk and the generated ones.
INSERTED_FIELDS = tuple(
    field
    for field in FailedIntegration._meta.concrete_fields
    if not field.primary_key and not field.generated
)


def _insert(records: list[FailedIntegration], *, shows_errors: bool | None = None) -> None:
    if len(records) == 1 and shows_errors is None:
        records[0].save(force_insert=True)
    else:
        _insert_many(records, shows_errors=shows_errors)


# The attribute of a record just inserted that holds its answer, as PostgreSQL wrote it.
STORED_JSON = "stored_json"


def _insert_many(records: list[FailedIntegration], *, shows_errors: bool | None = None) -> None:
    """Inserts the records in one statement, all or none. On PostgreSQL the rows go as one JSON
    array that PostgreSQL reads as rows of the table (`json_populate_recordset`): the ORM's
    multi-row VALUES spent more time building its 22,000 parameters than PostgreSQL spent
    inserting them, and arrays per column took psycopg longer to write than the JSON. With
    `shows_errors` (whether the answer shows error text), the statement also answers each
    record's JSON (its `STORED_JSON`): writing a bulk's 1000 answers in Python took longer than
    PostgreSQL takes."""
    if not is_postgresql():
        with transaction.atomic():
            FailedIntegration.objects.bulk_create(records)
        return
    fields = INSERTED_FIELDS
    quote = connection.ops.quote_name
    table = quote(FailedIntegration._meta.db_table)
    columns = ", ".join(quote(field.column) for field in fields)
    values = attrgetter(*(field.attname for field in fields))
    names = [field.column for field in fields]
    rows = orjson.dumps([dict(zip(names, values(record), strict=True)) for record in records])
    params = [rows.decode()]
    allowed = answer = ""
    if shows_errors is not None:
        allowed = f"WITH allowed AS ({CHANNEL_SQL}) "
        answer = f", (SELECT row_to_json(r)::text FROM (SELECT {JSON_COLUMNS}) AS r)"  # noqa: S608
        params = [shows_errors, records[0].channel_id, *params]
    # Names from the model's metadata, the values as parameters.
    sql = (
        f"{allowed}INSERT INTO {table} AS fi ({columns}) "  # noqa: S608
        f"SELECT {columns} FROM json_populate_recordset(NULL::{table}, %s::json) "
        f"RETURNING fi.{quote('id')}, fi.{quote('exhausted')}{answer}"
    )
    stored = fetchall_prepared(sql, params)
    # The rows come back in the order of the array, as they do for the ORM's multi-row
    # INSERT ... RETURNING, which bulk_create relies on the same way.
    for record, row in zip(records, stored, strict=True):
        record.pk, record.exhausted = row[0], row[1]
        if answer:
            setattr(record, STORED_JSON, row[2])
        record._state.adding, record._state.db = False, connection.alias


def supersede_recorded(channel_id: int, records: list[FailedIntegration], *, now) -> bool:
    """Supersedes older failures of the objects of records just stored; answers whether any
    record changed (those given included: an older report than an active one is superseded).

    The records are stored: from here on the answer is 201 whatever happens. Should the
    supersede fail (the database gone in between), the next report of the object does it.
    """
    try:
        return bool(transitions.supersede(channel_id, records, now=now))
    except DatabaseError as exc:
        logger.warning(
            "supersede after recording %s failure(s) failed: %s",
            len(records),
            exc,
            exc_info=not lost_connection(exc),
        )
        return False


def failed_integration_bulk_create(
    *, channel: Channel, payload: Any, claim: Claim = None, shows_errors: bool | None = None
) -> list[FailedIntegration]:
    """Records a batch of failures: all of them, or none when one item is invalid. With
    `shows_errors`, the records hold their answers where the database wrote them (`_record`).

    A 400 names each invalid item by its index in the batch, with its fields' messages.
    """
    limit = settings.BULK_MAX_ITEMS
    if not isinstance(payload, list):
        raise ValidationError(
            {"non_field_errors": [f"Expected a list of items, but got {type(payload).__name__}."]}
        )
    if not payload:
        raise ValidationError({"non_field_errors": ["Expected at least one item."]})
    if len(payload) > limit:
        raise ValidationError(
            {
                "non_field_errors": [
                    f"Ensure this list has at most {limit} items, not {len(payload)}."
                ]
            }
        )
    checked = [validate_item(item, channel_id=channel.pk) for item in payload]
    references = check_references(
        (values for values, errors in checked if not errors), channel_id=channel.pk
    )
    invalid, valid_index = [], 0
    for index, (_, errors) in enumerate(checked):
        if not errors:
            errors = references[valid_index]
            valid_index += 1
        if errors:
            invalid.append({"index": index, "errors": errors})
    if invalid:
        raise InvalidBody(
            {
                "detail": (
                    f"{len(invalid)} of {len(payload)} items are invalid; nothing was recorded."
                ),
                "code": "invalid",
                "items": invalid,
            }
        )
    records = new_records(channel.pk, (values for values, _ in checked), now=timezone.now())
    return _record(records, channel=channel, claim=claim, shows_errors=shows_errors)


# The dates a new record takes from the moment of its report.
MOMENT_FIELDS = ("created_date", "modified_date")


def new_records(
    channel_id: int, validated: Iterable[dict[str, Any]], *, now: dt.datetime
) -> list[FailedIntegration]:
    """Unsaved records of a channel from validated values (model attribute names), the other
    fields at their defaults, as `FailedIntegration(**values)` makes them. Built as Django
    builds a model's state (its attributes and a new `ModelState`) without `Model.__init__`,
    which looks up every field's descriptor and took a bulk of 1000 longer than its
    validation; the model has no `pre_init`/`post_init` receivers to skip (a test checks).
    `now`: the moment of the report, the records' creation and modification dates."""
    fields = FailedIntegration._meta.concrete_fields
    # A generated field is left unset, as the model leaves it: the database says it.
    defaults = {f.attname: f.get_default() for f in fields if not f.generated}
    defaults.update(channel_id=channel_id, created_date=now, modified_date=now)
    # A callable default is asked for each record, as `Model.__init__` asks it (a `dict` or a
    # `list` must not be shared between records).
    per_record = [
        f
        for f in fields
        if f.has_default() and callable(f.default) and f.attname not in MOMENT_FIELDS
    ]
    known = defaults.keys()
    new = FailedIntegration.__new__
    records = []
    for values in validated:
        if not values.keys() <= known:
            raise TypeError(f"not fields of a record: {sorted(values.keys() - known)}")
        record = new(FailedIntegration)
        record.__dict__ = defaults | {f.attname: f.get_default() for f in per_record} | values
        record._state = ModelState()
        records.append(record)
    return records


def failed_integration_update(
    *, failed: FailedIntegration, payload: Any, partial: bool
) -> FailedIntegration:
    """Writes only the fields the payload names, so that concurrent updates of other fields are
    all kept, and the life-cycle fields they call for (`transitions.after_update`), derived by
    the database from the row as written; answers the record as stored afterwards.

    An update that can make the record supersede another or be superseded (a new version, or
    active again) is one transaction with that supersede; any other is one UPDATE."""
    values = validated(payload, channel_id=failed.channel_id, partial=partial)
    sql, params = update_statement(tuple(values))
    params = bind(params, update_params(failed.channel_id, failed.pk, values))
    if not superseding(values):
        return _updated(fetchone(sql, params))
    with transaction.atomic():
        failed = _updated(fetchone(sql, params))
        if transitions.supersede(failed.channel_id, [failed], now=failed.modified_date):
            transitions.refresh_life_cycle([failed])
    return failed


def superseding(values: dict[str, Any]) -> bool:
    """Whether an update of these values may supersede a record or be superseded."""
    return "version_date" in values or bool(values.get("is_active"))


def _updated(row) -> FailedIntegration:
    if row is None:
        raise NotFound(FAILED_INTEGRATION_NOT_FOUND)  # deleted in the meantime
    converted = [
        value if not converters else _converted(value, converters, field)
        for value, (field, converters) in zip(row, _converters(connection.vendor), strict=True)
    ]
    return FailedIntegration.from_db(connection.alias, STORED_ATTNAMES, converted)


STORED_ATTNAMES = tuple(f.attname for f in FailedIntegration._meta.concrete_fields)


@cache
def _converters(vendor: str) -> list[tuple[Any, list]]:
    """Per stored column, its field and the converters that turn the database's value into the
    field's (as the ORM's reads apply them: SQLite's date-times are text, say)."""
    table = FailedIntegration._meta.db_table
    return [
        (field, connection.ops.get_db_converters(col) + col.get_db_converters(connection))
        for field in FailedIntegration._meta.concrete_fields
        for col in [field.get_col(table)]
    ]


def _converted(value, converters: list, field):
    for converter in converters:
        value = converter(value, field, connection)
    return value


def update_params(channel_id: int, pk: int, values: dict[str, Any]) -> dict[str, Any]:
    """The values of `update_statement`'s parameters for an update of one record."""
    meta = FailedIntegration._meta
    now = meta.get_field("modified_date").get_db_prep_save(timezone.now(), connection)
    return {
        **{
            name: meta.get_field(name).get_db_prep_save(value, connection)
            for name, value in values.items()
        },
        **policies.policy_params(channel_id),
        "modified_date": now,
        "pk": pk,
        "channel_id": channel_id,
    }


@cache
def update_statement(names: tuple[str, ...], guard: str = "") -> tuple[str, list]:
    """The UPDATE of one record's named fields (only those: a save() would write them all)
    and of the life-cycle fields they call for, answering the row as stored (RETURNING, on
    either database). Compiled by the ORM once per set of names and run prepared. `guard`: a
    condition of a statement written around it (the fast path's access)."""
    meta = FailedIntegration._meta
    query = UpdateQuery(FailedIntegration)
    query.add_q(Q(pk=Slot("pk", meta.pk), channel_id=Slot("channel_id", meta.get_field("channel"))))
    if guard:
        # A constant of the statement around it, never a value from a request.
        query.add_q(Q(RawSQL(guard, [], output_field=BooleanField())))  # noqa: S611
    values = {name: Slot(name, meta.get_field(name)) for name in names}
    now = Slot("modified_date", meta.get_field("modified_date"))
    query.add_update_values(
        {**values, "modified_date": now, **transitions.after_update(values, now=now)}
    )
    sql, params = query.get_compiler(connection=connection).as_sql()
    quote = connection.ops.quote_name
    returning = ", ".join(quote(f.column) for f in meta.concrete_fields)
    return f"{sql} RETURNING {returning}", params


def failed_integration_delete(*, failed: FailedIntegration) -> None:
    failed.delete()


def content_type_get_or_create(*, app_label: str, model: str) -> tuple[ContentType, bool]:
    """Makes a kind of back-office object known to the service (idempotent)."""
    return ContentType.objects.get_or_create(app_label=app_label, model=model)


# --- operator actions ------------------------------------------------------------------------

ACTIONS = transitions.OPERATOR_ACTIONS


@dataclass(frozen=True)
class ActionResult:
    action: str
    matched: int  # records the filters matched when the request arrived
    affected: int  # records the action changed (or would change, in a dry run)
    dry_run: bool

    def as_dict(self) -> dict:
        return {
            "action": self.action,
            "matched": self.matched,
            "affected": self.affected,
            "dry_run": self.dry_run,
        }


def failed_integration_action(
    *, queryset, action: str, reset_count: bool = False, dry_run: bool = False
) -> ActionResult:
    """Applies an operator action (`transitions.act`) to the records of `queryset` that it
    applies to, in one transaction; a dry run answers the counts only.

    Only records that existed when it was asked for are changed, so records arriving meanwhile
    are not touched.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    now = timezone.now()
    queryset = queryset.order_by().filter(created_date__lte=now)
    matched = queryset.count()
    eligible = transitions.eligible_for(action, queryset)
    if dry_run:
        return ActionResult(action, matched, eligible.count(), dry_run=True)
    with transaction.atomic():
        affected = transitions.act(action, eligible, now=now, reset_count=reset_count)
    return ActionResult(action, matched, affected, dry_run=False)
