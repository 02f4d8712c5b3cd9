"""Every fact about the fields of a failed integration, written once.

The model says what is stored (column, type, nullability, choices); a row here says what the
API does with it: whether a channel app writes it, which lookups filter it, whether it sorts,
how the counts keep it, and its place in the JSON. Everything else is derived from these two:
validation of bodies, the record's JSON (in Python and in SQL), the FilterSet, the sort keys, the
cursor's value types, the count dimensions and the OpenAPI additions.

A new writable, filterable, sortable field is the model's field (and its index), a row below,
and the migration `makemigrations` writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from django.db import models
from django.db.backends.base.operations import BaseDatabaseOperations

from integrations.models import FailedIntegration

# Filter lookups a row may offer. RANGE stands for gt, gte, lt and lte.
EXACT, IN, RANGE, ISNULL = "exact", "in", "range", "isnull"
RANGE_LOOKUPS = ("gt", "gte", "lt", "lte")

# How the counts keep a field (see counting): per value, per hour, or null or not.
PER_VALUE, PER_HOUR, NULL_OR_NOT = "value", "hour", "null"

# The value kinds of the API.
INT, BOOL, DATETIME, CHOICE, TEXT, STATE = "int", "bool", "datetime", "choice", "text", "state"


@dataclass(frozen=True)
class RecordField:
    name: str  # in bodies, answers, query strings and the OpenAPI document
    attname: str = ""  # the model's attribute, when it is not `name`
    writable: bool = False  # a channel app sends it (create, PUT, PATCH, bulk)
    required: bool = False  # in a create and a PUT
    answered: bool = True  # in the record's JSON
    lookups: tuple[str, ...] = ()
    sortable: bool = False
    # The counts: a histogram dimension (its number is stored: never reuse one; 10 is the
    # counts' own, of records reported per hour and reason), or a
    # column of the cube (equality filters and group keys summed from a few cells).
    dimension: tuple[int, str] | None = None
    in_cube: bool = False
    # A content type is filtered by id or by `app_label.model`.
    by_content_type_name: bool = False
    # Answered empty to those who may only read the channel: text a channel app wrote, which
    # may hold what the app's operators see but its viewers should not.
    operators_only: bool = False
    description: str = ""  # for the OpenAPI document, where the contract has none

    @cached_property
    def model_field(self) -> models.Field | None:
        if self.name == STATE:
            return None
        return FailedIntegration._meta.get_field(self.attname or self.name)

    @cached_property
    def target(self) -> str:
        """The model attribute (and column) the value is read from and written to."""
        if self.model_field is None:
            return ""
        return self.model_field.attname

    @cached_property
    def column(self) -> str:
        return self.model_field.column if self.model_field is not None else ""

    @cached_property
    def kind(self) -> str:
        field = self.model_field
        if field is None:
            return STATE
        if getattr(field, "generated", False):
            field = field.output_field
        if field.choices:
            return CHOICE
        if isinstance(field, models.BooleanField):
            return BOOL
        if isinstance(field, models.DateTimeField):
            return DATETIME
        if isinstance(field, models.IntegerField | models.ForeignKey | models.AutoField):
            return INT
        return TEXT

    @cached_property
    def nullable(self) -> bool:
        return self.model_field is not None and self.model_field.null

    @cached_property
    def bounds(self) -> tuple[int, int] | None:
        """(minimum, maximum) of an integer: the storage's. An id starts at 1."""
        field = self.model_field
        if self.kind != INT:
            return None
        if field.is_relation:
            field = field.target_field
        low, high = BaseDatabaseOperations.integer_field_ranges[field.get_internal_type()]
        return (1 if field.primary_key else low), high

    @cached_property
    def choices(self) -> tuple[str, ...]:
        if self.kind != CHOICE:
            return ()
        return tuple(value for value, _ in self.model_field.choices)

    def filter_names(self) -> list[tuple[str, str]]:
        """(query parameter, lookup) of each filter of the field."""
        names = []
        for lookup in self.lookups:
            if lookup == EXACT:
                names.append((self.name, EXACT))
            elif lookup == RANGE:
                names += [(f"{self.name}__{each}", each) for each in RANGE_LOOKUPS]
            else:
                names.append((f"{self.name}__{lookup}", lookup))
        return names


R = RecordField
EXACT_AND_RANGE = (EXACT, RANGE)

# The contract's fields in its order, then the ones the service adds: the JSON's order.
RECORD_FIELDS: tuple[RecordField, ...] = (
    R("pk", attname="id", lookups=(IN,), sortable=True),
    R("channel", writable=True),
    R(
        "version_date",
        writable=True,
        required=True,
        lookups=EXACT_AND_RANGE,
        sortable=True,
        dimension=(4, PER_HOUR),
    ),
    R("reason_type", writable=True, required=True, lookups=(EXACT, IN), in_cube=True),
    R("is_active", writable=True, lookups=(EXACT,), in_cube=True),
    R(
        "content_type",
        writable=True,
        required=True,
        lookups=(EXACT, IN),
        in_cube=True,
        by_content_type_name=True,
    ),
    R("object_id", writable=True, required=True, lookups=(EXACT, IN)),
    R(
        "expiration_date",
        writable=True,
        lookups=(*EXACT_AND_RANGE, ISNULL),
        sortable=True,
        dimension=(5, PER_HOUR),
    ),
    R(
        "retry_count",
        writable=True,
        lookups=EXACT_AND_RANGE,
        sortable=True,
        dimension=(1, PER_VALUE),
    ),
    R("max_retry_count", writable=True, lookups=EXACT_AND_RANGE, dimension=(2, PER_VALUE)),
    R("retry_interval", writable=True, lookups=EXACT_AND_RANGE, dimension=(3, PER_VALUE)),
    R("integration_action", writable=True, lookups=(EXACT, ISNULL), dimension=(8, NULL_OR_NOT)),
    R("log_id", writable=True, lookups=(EXACT, ISNULL), dimension=(9, NULL_OR_NOT)),
    R(
        "created_date",
        lookups=EXACT_AND_RANGE,
        sortable=True,
        dimension=(6, PER_HOUR),
        description="When the record was created (UTC).",
    ),
    R(
        "modified_date",
        lookups=EXACT_AND_RANGE,
        sortable=True,
        dimension=(7, PER_HOUR),
        description="When the record was last changed (UTC).",
    ),
    R("state", description="Where the record is in its retry life cycle (see the README)."),
    R(
        "next_retry_at",
        lookups=(*EXACT_AND_RANGE, ISNULL),
        description="When the retry engine will try it next; null: not on its own.",
    ),
    R(
        "last_attempt_at",
        lookups=(*EXACT_AND_RANGE, ISNULL),
        description="When it was last attempted.",
    ),
    R(
        "last_error",
        operators_only=True,
        description=(
            "The channel app's answer to the last failed attempt (its status and a short "
            "excerpt); empty to users who may only read the channel."
        ),
    ),
    R(
        "resolved_at",
        lookups=(*EXACT_AND_RANGE, ISNULL),
        dimension=(11, PER_HOUR),
        description="When it stopped being retried.",
    ),
    R("exhausted", answered=False, lookups=(EXACT,), in_cube=True),
    R("parked", answered=False, lookups=(EXACT,), in_cube=True),
    # With `parked` and `exhausted`, what the state of a record is when the time plays no part:
    # the counts keep it so that they count records by state (counting.counts.state_groups).
    R("resolution", answered=False, in_cube=True),
)

BY_NAME = {field.name: field for field in RECORD_FIELDS}
WRITABLE = tuple(field for field in RECORD_FIELDS if field.writable)
ANSWERED = tuple(field for field in RECORD_FIELDS if field.answered)
SORTABLE = tuple(field.name for field in RECORD_FIELDS if field.sortable)
# Histogram dimensions of the counts: (number, column, unit).
DIMENSIONS = tuple(
    (field.dimension[0], field.column, field.dimension[1])
    for field in sorted(
        (field for field in RECORD_FIELDS if field.dimension), key=lambda f: f.dimension[0]
    )
)
CUBE_COLUMNS = tuple(field.column for field in RECORD_FIELDS if field.in_cube)
