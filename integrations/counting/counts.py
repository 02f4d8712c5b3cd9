"""Exact counts of a channel's failed integrations without counting rows (PostgreSQL).

Counting two million rows takes PostgreSQL a quarter of a second however it is indexed, so the
list's `count` is read from counts that triggers keep in step with every write, in the same
transaction:

* the **cube**: rows per (channel, reason_type, is_active, content_type, exhausted, parked,
  resolution). Any combination of equality filters on those (and none: the channel's total)
  sums a few cells, and with the few records whose state the time decides, the cells give the
  counts by state (reads.selectors).
* the **histograms**: rows per (channel, dimension, value) for the integer fields (per value)
  and the date-times (per hour). A range filter sums the whole hours inside the range and
  counts the rows of the one partial hour at its edge through the (channel, field) index.
  One more counts records reported per hour and reason (the console's chart).

Writers never update a shared counter row: statement-level triggers append their deltas
(`..._delta` tables), so concurrent writes in one channel do not queue behind each other. The
deltas are folded into the base tables by `compact()`, run when a read meets many of them and
by `manage.py compact_counts`. A read sums base and deltas, so it is exact at every moment.

Filters the counts cannot answer (object ids, several range filters, a range with equality
filters) fall back to COUNT(*), which is exact too, and fast for such selective filters.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import connection

from integrations.choices import ReasonType
from integrations.records.registry import (
    BOOL,
    BY_NAME,
    CUBE_COLUMNS,
    DIMENSIONS,
    EXACT,
    IN,
    INT,
    ISNULL,
    NULL_OR_NOT,
    PER_HOUR,
    PER_VALUE,
    RECORD_FIELDS,
)

# Histogram dimensions: (number, column, unit). Unit "value": the value itself; "hour": the
# hour since the epoch; "null": 1 when the column is null, else 0.
HOUR = 3600
NULL_BUCKET = -(2**63)
DIMENSION_OF = {column: (number, unit) for number, column, unit in DIMENSIONS}
# One more histogram, of two columns: records reported per hour and reason (the console's
# chart). Its value is the created hour times REASON_SLOTS plus the reason's place among
# ReasonType's values; the places are stored, so a new reason is added at the end.
REPORTED, REPORTED_DIMENSION, REASON_SLOTS = "reported", 10, 16
COUNT_DIMENSIONS = (*DIMENSIONS, (REPORTED_DIMENSION, BY_NAME["created_date"].column, REPORTED))
# A read that meets more deltas than this folds the channel's deltas into the base tables.
COMPACT_AFTER_DELTAS = 2000


def _dimension_value(alias: str, column: str, unit: str) -> str:
    expression = f"{alias}.{column}"
    if unit == REPORTED:
        places = " ".join(
            f"WHEN '{reason}' THEN {place}" for place, reason in enumerate(ReasonType.values)
        )
        reason = f"{alias}.{BY_NAME['reason_type'].column}"
        expression = (
            f"fi_count_hour({expression}) * {REASON_SLOTS} "
            f"+ CASE {reason} {places} ELSE {REASON_SLOTS - 1} END"
        )
    elif unit == "hour":
        expression = f"coalesce(fi_count_hour({expression}), {NULL_BUCKET})"
    elif unit == "null":
        expression = f"({expression} IS NULL)::int"
    return f"({expression})::bigint"


def _dimension_sql(alias: str) -> str:
    """(dim, value) of every histogram dimension of a row."""
    return ", ".join(
        f"({number}::smallint, {_dimension_value(alias, column, unit)})"
        for number, column, unit in COUNT_DIMENSIONS
    )


def _delta_statements(rows: str, sign: str) -> str:
    cube = ", ".join(CUBE_COLUMNS)
    return f"""
        INSERT INTO fi_count_cube_delta (channel_id, {cube}, n)
        SELECT channel_id, {cube}, {sign}count(*) FROM {rows} GROUP BY channel_id, {cube};
        INSERT INTO fi_count_hist_delta (channel_id, dim, value, n)
        SELECT r.channel_id, d.dim, d.value, {sign}count(*)
        FROM {rows} r CROSS JOIN LATERAL (VALUES {_dimension_sql("r")}) AS d(dim, value)
        GROUP BY r.channel_id, d.dim, d.value;
    """


def _dimension_pairs_sql() -> str:
    """(dim, old value, new value) of every histogram dimension of an updated row."""
    return ", ".join(
        f"({number}::smallint, {_dimension_value('o', column, unit)}, "
        f"{_dimension_value('r', column, unit)})"
        for number, column, unit in COUNT_DIMENSIONS
    )


def _update_statements() -> str:
    """An update appends, for the rows whose counted values changed, the old cell as -1 and the
    new one as +1, skipping cells that cancel out. An update of uncounted columns only (a
    worker's lease, say) appends nothing and costs a join of the old and new rows by id."""
    cube = ", ".join(CUBE_COLUMNS)
    old_cube = ", ".join(f"o.{column}" for column in ("channel_id", *CUBE_COLUMNS))
    new_cube = ", ".join(f"r.{column}" for column in ("channel_id", *CUBE_COLUMNS))
    return f"""
        INSERT INTO fi_count_cube_delta (channel_id, {cube}, n)
        SELECT c.channel_id, {", ".join(f"c.{column}" for column in CUBE_COLUMNS)}, sum(c.n)
        FROM old_rows o JOIN new_rows r ON r.id = o.id
        CROSS JOIN LATERAL (VALUES ({old_cube}, -1), ({new_cube}, 1))
            AS c(channel_id, {cube}, n)
        WHERE ({old_cube}) IS DISTINCT FROM ({new_cube})
        GROUP BY c.channel_id, {", ".join(f"c.{column}" for column in CUBE_COLUMNS)}
        HAVING sum(c.n) <> 0;
        INSERT INTO fi_count_hist_delta (channel_id, dim, value, n)
        SELECT h.channel_id, h.dim, h.value, sum(h.n)
        FROM old_rows o JOIN new_rows r ON r.id = o.id
        CROSS JOIN LATERAL (VALUES {_dimension_pairs_sql()}) AS d(dim, old_value, new_value)
        CROSS JOIN LATERAL (
            VALUES (o.channel_id, d.dim, d.old_value, -1), (r.channel_id, d.dim, d.new_value, 1)
        ) AS h(channel_id, dim, value, n)
        WHERE d.old_value IS DISTINCT FROM d.new_value OR o.channel_id <> r.channel_id
        GROUP BY h.channel_id, h.dim, h.value
        HAVING sum(h.n) <> 0;
    """


# The hour since the epoch. Its body is immutable (the epoch of an interval, not of a
# timestamptz, whose extract is only stable), so the planner inlines it: called as a function,
# it cost the triggers most of their time.
HOUR_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION fi_count_hour(ts timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT floor(extract(epoch FROM ts - '1970-01-01 00:00:00+00'::timestamptz) / {HOUR})::bigint $$;
"""

UPDATE_FUNCTION_SQL = f"""
CREATE OR REPLACE FUNCTION fi_count_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN {_update_statements()} RETURN NULL; END $$;
"""


TABLE = "integrations_failedintegration"


def _cube_column_definitions() -> str:
    """The cube's columns, typed as the table's."""
    definitions = ["channel_id bigint NOT NULL"]
    for field in RECORD_FIELDS:
        if field.in_cube:
            model_field = field.model_field
            if getattr(model_field, "generated", False):
                model_field = model_field.output_field
            if field.kind == BOOL:
                sql_type = "boolean"
            elif field.kind == INT:
                sql_type = "integer"
            else:
                sql_type = f"varchar({model_field.max_length})"
            definitions.append(f"{field.column} {sql_type} NOT NULL")
    return ",\n    ".join(definitions)


INSTALL_SQL = f"""
CREATE TABLE fi_count_cube (
    {_cube_column_definitions()},
    n bigint NOT NULL,
    PRIMARY KEY (channel_id, {", ".join(CUBE_COLUMNS)})
);
CREATE TABLE fi_count_cube_delta (
    id bigserial PRIMARY KEY,
    {_cube_column_definitions()},
    n bigint NOT NULL
);
CREATE INDEX fi_count_cube_delta_channel ON fi_count_cube_delta (channel_id);
CREATE TABLE fi_count_hist (
    channel_id bigint NOT NULL,
    dim smallint NOT NULL,
    value bigint NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (channel_id, dim, value) INCLUDE (n)
);
CREATE TABLE fi_count_hist_delta (
    id bigserial PRIMARY KEY,
    channel_id bigint NOT NULL,
    dim smallint NOT NULL,
    value bigint NOT NULL,
    n bigint NOT NULL
);
CREATE INDEX fi_count_hist_delta_channel ON fi_count_hist_delta (channel_id, dim, value);

{HOUR_FUNCTION_SQL}
CREATE FUNCTION fi_count_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN {_delta_statements("new_rows", "")} RETURN NULL; END $$;
{UPDATE_FUNCTION_SQL}CREATE FUNCTION fi_count_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN {_delta_statements("old_rows", "-")} RETURN NULL; END $$;
CREATE FUNCTION fi_count_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE fi_count_cube, fi_count_cube_delta, fi_count_hist, fi_count_hist_delta;
    RETURN NULL;
END $$;

CREATE TRIGGER fi_count_insert AFTER INSERT ON {TABLE}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION fi_count_after_insert();
CREATE TRIGGER fi_count_update AFTER UPDATE ON {TABLE}
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fi_count_after_update();
CREATE TRIGGER fi_count_delete AFTER DELETE ON {TABLE}
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION fi_count_after_delete();
CREATE TRIGGER fi_count_truncate AFTER TRUNCATE ON {TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION fi_count_after_truncate();

CREATE FUNCTION fi_count_compact(p_channel bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- One compaction per channel at a time; the others have nothing left to do.
    IF NOT pg_try_advisory_xact_lock(
        hashtext('fi_count_compact'), mod(p_channel, 2147483647)::int
    ) THEN
        RETURN;
    END IF;
    WITH moved AS (
        DELETE FROM fi_count_cube_delta WHERE channel_id = p_channel
        RETURNING channel_id, {", ".join(CUBE_COLUMNS)}, n
    )
    INSERT INTO fi_count_cube AS c (channel_id, {", ".join(CUBE_COLUMNS)}, n)
    SELECT channel_id, {", ".join(CUBE_COLUMNS)}, sum(n) FROM moved
    GROUP BY channel_id, {", ".join(CUBE_COLUMNS)}
    ORDER BY channel_id, {", ".join(CUBE_COLUMNS)}
    ON CONFLICT (channel_id, {", ".join(CUBE_COLUMNS)}) DO UPDATE SET n = c.n + excluded.n;
    WITH moved AS (
        DELETE FROM fi_count_hist_delta WHERE channel_id = p_channel
        RETURNING channel_id, dim, value, n
    )
    INSERT INTO fi_count_hist AS h (channel_id, dim, value, n)
    SELECT channel_id, dim, value, sum(n) FROM moved GROUP BY channel_id, dim, value
    ORDER BY channel_id, dim, value
    ON CONFLICT (channel_id, dim, value) DO UPDATE SET n = h.n + excluded.n;
    DELETE FROM fi_count_cube WHERE channel_id = p_channel AND n = 0;
    DELETE FROM fi_count_hist WHERE channel_id = p_channel AND n = 0;
END $$;

-- Counts of the rows already there.
INSERT INTO fi_count_cube_delta (channel_id, {", ".join(CUBE_COLUMNS)}, n)
SELECT channel_id, {", ".join(CUBE_COLUMNS)}, count(*) FROM {TABLE}
GROUP BY channel_id, {", ".join(CUBE_COLUMNS)};
INSERT INTO fi_count_hist_delta (channel_id, dim, value, n)
SELECT r.channel_id, d.dim, d.value, count(*)
FROM {TABLE} r CROSS JOIN LATERAL (VALUES {_dimension_sql("r")}) AS d(dim, value)
GROUP BY r.channel_id, d.dim, d.value;
SELECT fi_count_compact(channel_id) FROM (SELECT DISTINCT channel_id FROM fi_count_cube_delta) c;
"""

UNINSTALL_SQL = f"""
DROP TRIGGER IF EXISTS fi_count_insert ON {TABLE};
DROP TRIGGER IF EXISTS fi_count_update ON {TABLE};
DROP TRIGGER IF EXISTS fi_count_delete ON {TABLE};
DROP TRIGGER IF EXISTS fi_count_truncate ON {TABLE};
DROP FUNCTION IF EXISTS fi_count_after_insert, fi_count_after_update, fi_count_after_delete,
    fi_count_after_truncate, fi_count_compact, fi_count_hour;
DROP TABLE IF EXISTS fi_count_cube, fi_count_cube_delta, fi_count_hist, fi_count_hist_delta;
"""


# --- reading ----------------------------------------------------------------------------------

# parameter: (cube column, whether the value is a list)
CUBE_FILTERS = {
    name: (field.column, lookup == IN)
    for field in RECORD_FIELDS
    if field.in_cube
    for name, lookup in field.filter_names()
    if lookup in (EXACT, IN)
}
# parameter: the column of a histogram that tells null from not null
NULL_FILTERS = {
    name: field.column
    for field in RECORD_FIELDS
    if field.dimension
    for name, lookup in field.filter_names()
    if lookup == ISNULL
}
RANGE_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def count_sql(channel_id: int, filters: tuple[tuple[str, Any, Any], ...]) -> tuple[str, list]:
    """A statement answering (count, deltas met) for the filters, or ("", []) when the counts
    cannot answer them. `filters` are a ListQuery's (name, filter, value) triples. The URL's
    channel is always applied; a `channel` filter naming another one counts nothing."""
    filters = tuple(item for item in filters if item[0] != "channel" or item[2] != channel_id)
    if any(name == "channel" for name, _, _ in filters):
        return "SELECT 0::bigint, 0::bigint", []
    names = [name for name, _, _ in filters]
    if all(name in CUBE_FILTERS for name in names):
        return _cube_sql(channel_id, filters)
    if len(filters) == 1:
        name, _, value = filters[0]
        if name in NULL_FILTERS:
            return _null_sql(channel_id, NULL_FILTERS[name], value)
        if name == "expired":
            return _expired_sql(channel_id, value)
        field_name, _, lookup = name.partition("__")
        field = BY_NAME.get(field_name)
        unit = field.dimension[1] if field is not None and field.dimension else ""
        if unit and unit != NULL_OR_NOT and isinstance(value, dt.datetime | int):
            if lookup in RANGE_OPERATORS:
                return _range_sql(channel_id, field.column, RANGE_OPERATORS[lookup], value)
            if lookup == "" and unit == PER_VALUE:
                return _range_sql(channel_id, field.column, "=", value)
    return "", []


def group_counts(channel_id: int, filters, columns: list[str]) -> list[tuple] | None:
    """Counts per group of cube `columns` ((*values, count) rows), or None when the counts
    cannot answer (a filter or a group key outside the cube)."""
    if not set(columns) <= set(CUBE_COLUMNS):
        return None
    if not all(name in CUBE_FILTERS for name, _, _ in filters):
        return None
    where, params = _cube_where(channel_id, filters)
    keys = ", ".join(columns)
    sql = (
        f"SELECT {keys}, sum(n)::bigint FROM (SELECT {keys}, n FROM fi_count_cube WHERE {where} "
        f"UNION ALL SELECT {keys}, n FROM fi_count_cube_delta WHERE {where}) AS cells "
        f"GROUP BY {keys} HAVING sum(n) <> 0"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params * 2)
        return cursor.fetchall()


def _hist_cells(channel_id: int, dim: int, least: int) -> list[tuple[int, int]]:
    """(value, count) of one histogram of the channel, from `least` on."""
    where = "channel_id = %s AND dim = %s AND value >= %s"
    sql = (
        f"SELECT value, sum(n)::bigint FROM (SELECT value, n FROM fi_count_hist WHERE {where} "
        f"UNION ALL SELECT value, n FROM fi_count_hist_delta WHERE {where}) AS cells "
        f"GROUP BY value HAVING sum(n) <> 0"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [channel_id, dim, least] * 2)
        return cursor.fetchall()


def per_hour(channel_id: int, column: str, since: dt.datetime) -> dict[dt.datetime, int]:
    """Records per hour of a date-time column kept per hour, from the hour of `since` on."""
    number, unit = DIMENSION_OF[column]
    assert unit == PER_HOUR, column
    return {
        EPOCH + dt.timedelta(hours=hour): n
        for hour, n in _hist_cells(channel_id, number, _hour(since))
    }


def reported_per_hour(channel_id: int, since: dt.datetime) -> dict[tuple[dt.datetime, str], int]:
    """Records reported (created) per (hour, reason) from the hour of `since` on."""
    reasons = ReasonType.values
    found = {}
    for value, n in _hist_cells(channel_id, REPORTED_DIMENSION, _hour(since) * REASON_SLOTS):
        hour, place = divmod(value, REASON_SLOTS)
        if place < len(reasons):
            found[EPOCH + dt.timedelta(hours=hour), reasons[place]] = n
    return found


def _sum_sql(base: str, delta: str, where: str) -> str:
    return (
        f"SELECT coalesce(sum(n), 0)::bigint, count(*) FILTER (WHERE delta) FROM ("
        f"SELECT n, false AS delta FROM {base} WHERE {where} "
        f"UNION ALL SELECT n, true FROM {delta} WHERE {where}) AS counts"
    )


def _cube_where(channel_id: int, filters) -> tuple[str, list]:
    """The cells of the channel that the (cube) filters select: SQL and parameters."""
    conditions, params = ["channel_id = %s"], [channel_id]
    for name, _, value in filters:
        column, is_list = CUBE_FILTERS[name]
        conditions.append(f"{column} = ANY(%s)" if is_list else f"{column} = %s")
        params.append(list(value) if is_list else value)
    return " AND ".join(conditions), params


def _cube_sql(channel_id: int, filters) -> tuple[str, list]:
    where, params = _cube_where(channel_id, filters)
    return _sum_sql("fi_count_cube", "fi_count_cube_delta", where), params * 2


def _hist_sql(channel_id: int, dim: int, condition: str, params: list) -> tuple[str, list]:
    where = f"channel_id = %s AND dim = %s AND {condition}"
    return (
        _sum_sql("fi_count_hist", "fi_count_hist_delta", where),
        [channel_id, dim, *params] * 2,
    )


def _null_sql(channel_id: int, column: str, is_null: bool) -> tuple[str, list]:
    number, unit = DIMENSION_OF[column]
    if unit == "hour":
        operator = "=" if is_null else "<>"
        return _hist_sql(channel_id, number, f"value {operator} %s", [NULL_BUCKET])
    return _hist_sql(channel_id, number, "value = %s", [int(is_null)])


def _range_sql(channel_id: int, column: str, operator: str, value) -> tuple[str, list]:
    number, unit = DIMENSION_OF[column]
    if unit == "value":
        return _hist_sql(channel_id, number, f"value {operator} %s", [value])
    # Whole hours on the far side of the bound's hour come from the histogram; the rows of the
    # bound's own hour are counted in the table, through its (channel, column) index.
    bucket = _hour(value)
    start = EPOCH + dt.timedelta(hours=bucket)
    if start > dt.datetime.max.replace(tzinfo=dt.UTC) - dt.timedelta(hours=1):
        return "", []  # the last hour of year 9999 has no hour after it: rows are counted
    end = start + dt.timedelta(hours=1)
    whole = ">" if operator in (">", ">=") else "<"
    sql, params = _hist_sql(
        channel_id, number, f"value {whole} %s AND value <> %s", [bucket, NULL_BUCKET]
    )
    edge = (
        f"SELECT count(*) FROM {TABLE} WHERE channel_id = %s AND {column} >= %s "
        f"AND {column} < %s AND {column} {operator} %s"
    )
    return (
        f"SELECT whole.sum + edge.count, whole.deltas FROM ({sql}) AS whole(sum, deltas), "
        f"({edge}) AS edge(count)",
        [*params, channel_id, start, end, value],
    )


def _expired_sql(channel_id: int, expired: bool) -> tuple[str, list]:
    from django.utils import timezone

    sql, params = _range_sql(channel_id, "expiration_date", "<", timezone.now())
    if expired:
        return sql, params
    total_sql, total_params = _cube_sql(channel_id, ())
    return (
        f"SELECT total.sum - expired.sum, total.deltas + expired.deltas "
        f"FROM ({total_sql}) AS total(sum, deltas), ({sql}) AS expired(sum, deltas)",
        [*total_params, *params],
    )


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _hour(value: dt.datetime) -> int:
    # In whole microseconds: a float timestamp rounds the last microsecond of year 9999 up.
    return (value - EPOCH) // dt.timedelta(hours=1)


def count(channel_id: int, filters) -> int | None:
    """The exact count for the filters from the counts, or None when they cannot answer."""
    sql, params = count_sql(channel_id, filters)
    if not sql:
        return None
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        total, deltas = cursor.fetchone()
    if deltas > COMPACT_AFTER_DELTAS:
        compact(channel_id)
    return total


def vacuum() -> None:
    """Vacuums and analyzes the count tables: folding deltas leaves dead rows behind, which
    reads would otherwise step over until autovacuum (if it runs at all) comes by. Needs a
    connection outside a transaction (the worker's, a command's): inside one it does nothing."""
    if connection.in_atomic_block:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "VACUUM (ANALYZE) fi_count_cube_delta, fi_count_hist_delta, fi_count_cube, "
            "fi_count_hist"
        )


def compact(channel_id: int | None = None) -> None:
    """Folds the deltas of one channel (or of every channel) into the base counts."""
    with connection.cursor() as cursor:
        if channel_id is None:
            cursor.execute(
                "SELECT fi_count_compact(channel_id) FROM "
                "(SELECT DISTINCT channel_id FROM fi_count_cube_delta "
                "UNION SELECT DISTINCT channel_id FROM fi_count_hist_delta) AS c"
            )
        else:
            cursor.execute("SELECT fi_count_compact(%s)", [channel_id])
