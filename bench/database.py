"""The benchmark's own PostgreSQL database: create it, seed it with COPY, tidy it between runs.

The database is marked with a comment when it is created; a database without that mark is
never seeded, emptied or dropped, so that a name given by mistake cannot hurt real data.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import itertools
import random
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

MARK = "failed-integrations benchmark database, created by bench/run; safe to drop"

CHANNEL_TABLE = "integrations_channel"
FAILED_TABLE = "integrations_failedintegration"
ACTION_TABLE = "integrations_integrationaction"


@dataclass(frozen=True)
class Schema:
    """The tables of one implementation's failed integrations, channels and integration
    actions: the service's, or those of the obvious DRF implementation on a schema of its own."""

    channel_table: str
    failed_table: str
    action_table: str


SERVICE = Schema(CHANNEL_TABLE, FAILED_TABLE, ACTION_TABLE)
OWN = Schema(
    "obvious_own_channel", "obvious_own_failedintegration", "obvious_own_integrationaction"
)

# The back office's integrable objects, looked up in django_content_type, with the share of
# failures each gets (products, prices and stocks fail most often).
CONTENT_TYPES: tuple[tuple[str, str, float], ...] = (
    ("products", "product", 0.28),
    ("prices", "productprice", 0.22),
    ("stocks", "productstock", 0.24),
    ("products", "productimage", 0.10),
    ("orders", "order", 0.06),
    ("orders", "orderitem", 0.05),
    ("orders", "cancellationrequest", 0.02),
    ("categories", "categorynode", 0.03),
)
REASON_TYPES: tuple[tuple[str, float], ...] = (
    ("mapping", 0.20),
    ("remote", 0.60),
    ("channel_app", 0.20),
)
ACTIVE_SHARE = 0.85
# Channels get rows in a Zipf-like way: a few big marketplaces, a long tail of small ones.
CHANNEL_SKEW = 0.8
SEED = 20250627

YEAR = dt.timedelta(days=365)
UTC = dt.UTC


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url` (whose path is ignored)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin_connect(server_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url(server_url, "postgres"), autocommit=True, connect_timeout=5)


def _mark(connection: psycopg.Connection, name: str) -> str | None:
    row = connection.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
        (name,),
    ).fetchone()
    if row is None:
        raise LookupError(name)
    return row[0]


def ensure_database(server_url: str, name: str) -> bool:
    """Creates database `name` unless it exists; answers whether it was created.

    Refuses (SystemExit) a database that exists but was not created by the benchmark.
    """
    with _admin_connect(server_url) as connection:
        try:
            mark = _mark(connection, name)
        except LookupError:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            connection.execute(
                sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                    sql.Identifier(name), sql.Literal(MARK)
                )
            )
            return True
    if mark != MARK:
        raise SystemExit(
            f"Database {name!r} exists but was not created by bench/run (it has no benchmark "
            "mark); choose another name with --database."
        )
    return False


def drop_database(server_url: str, name: str) -> None:
    with _admin_connect(server_url) as connection:
        try:
            mark = _mark(connection, name)
        except LookupError:
            return
        if mark != MARK:
            raise SystemExit(f"Not dropping {name!r}: it was not created by bench/run.")
        connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def server_version(server_url: str) -> str:
    with _admin_connect(server_url) as connection:
        return connection.execute("SELECT version()").fetchone()[0]


# --- columns -------------------------------------------------------------------------------


def _zero_values(rng: random.Random, now: dt.datetime) -> dict[str, object]:
    return {
        "boolean": False,
        "smallint": 0,
        "integer": 0,
        "bigint": 0,
        "numeric": decimal.Decimal(0),
        "real": 0.0,
        "double precision": 0.0,
        "character varying": "",
        "character": "",
        "text": "",
        "json": {},
        "jsonb": {},
        "timestamp with time zone": now,
        "timestamp without time zone": now.replace(tzinfo=None),
        "date": now.date(),
        "interval": dt.timedelta(0),
        "uuid": lambda: uuid.UUID(int=rng.getrandbits(128), version=4),
    }


def extra_required_columns(
    connection: psycopg.Connection,
    table: str,
    named: set[str],
    rng: random.Random,
    model_defaults: dict[str, object],
) -> dict[str, object]:
    """Columns of `table` that must be given (NOT NULL, no default in the database) but that
    the seeder does not name: columns the service gained after this seeder was written. Each
    gets its model's default when that is a constant (Django keeps defaults in Python), else
    the zero of its type (a callable when every row needs its own value, as for a uuid)."""
    rows = connection.execute(
        """
        SELECT column_name, data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = %s
          AND is_nullable = 'NO' AND column_default IS NULL
          AND is_identity = 'NO' AND is_generated = 'NEVER'
        ORDER BY ordinal_position
        """,
        (table,),
    ).fetchall()
    zeros = _zero_values(rng, dt.datetime.now(UTC))
    extra: dict[str, object] = {}
    for column, data_type in rows:
        if column in named:
            continue
        if column in model_defaults:
            extra[column] = model_defaults[column]
            continue
        if data_type not in zeros:
            raise SystemExit(
                f"{table}.{column} ({data_type}) is required and has no default; teach "
                "bench/database.py a value for it."
            )
        extra[column] = zeros[data_type]
    return extra


def column_types(connection: psycopg.Connection, table: str) -> dict[str, int]:
    """The type oid of each column of `table` (a binary COPY must name them exactly)."""
    return dict(
        connection.execute(
            "SELECT attname, atttypid::int FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        ).fetchall()
    )


def _value(value: object) -> object:
    return value() if callable(value) else value


# --- seeding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedState:
    rows: int
    channels: int
    # The moment the rows' dates are reckoned from: two seedings with the same rows, channels
    # and anchor write the same rows (the generator's random seed is fixed).
    anchor: dt.datetime | None = field(default=None, compare=False)


# What the last seeding wrote, kept beside the service's tables (in the benchmark's database
# only): a run that was interrupted before it took its writes back still knows its seed.
SEED_TABLE = "bench_seed"


def _exists(connection: psycopg.Connection, table: str) -> bool:
    return connection.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]


def current_state(connection: psycopg.Connection, schema: Schema = SERVICE) -> SeedState | None:
    """The rows, channels and anchor of the last complete seeding, None when there was none or
    its rows are not all there any more (ids 1..rows; ids above are a run's writes)."""
    if not _exists(connection, SEED_TABLE) or not _exists(connection, SCENARIO_ROWS_TABLE):
        return None
    # A table of an earlier version of the benchmark has no anchor: the state then has none.
    row = connection.execute(
        sql.SQL("SELECT rows, channels, (to_jsonb(s) ->> 'anchor')::timestamptz FROM {} s").format(
            sql.Identifier(SEED_TABLE)
        )
    ).fetchone()
    if row is None:
        return None
    state = SeedState(rows=row[0], channels=row[1], anchor=row[2])
    rows = connection.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE id <= %s").format(
            sql.Identifier(schema.failed_table)
        ),
        (state.rows,),
    ).fetchone()[0]
    channels = connection.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema.channel_table))
    ).fetchone()[0]
    if rows != state.rows or channels != state.channels:
        return None
    return state


# A copy of the seeded rows of the scenarios' channel (the median one), made with the seed: the
# rows that the patch scenario changed are put back from it after each peer (take_back_writes).
SCENARIO_ROWS_TABLE = "bench_seed_rows"


def _stored_columns(connection: psycopg.Connection, table: str) -> list[str]:
    """The columns of `table` that are written (not generated), in the table's order."""
    return [
        r[0]
        for r in connection.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
            "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
            (table,),
        )
    ]


def _copy_scenario_rows(connection: psycopg.Connection, schema: Schema, rows: int) -> None:
    channel_id, _ = median_channel(connection, schema, rows)
    columns = sql.SQL(", ").join(
        map(sql.Identifier, _stored_columns(connection, schema.failed_table))
    )
    table = sql.Identifier(SCENARIO_ROWS_TABLE)
    connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
    connection.execute(
        sql.SQL("CREATE TABLE {} AS SELECT {} FROM {} WHERE channel_id = %s AND id <= %s").format(
            table, columns, sql.Identifier(schema.failed_table)
        ),
        (channel_id, rows),
    )
    connection.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(table))


def restore_scenario_rows(connection: psycopg.Connection, schema: Schema = SERVICE) -> int:
    """Puts the scenarios' channel's rows that differ from their copy back as they were seeded
    (the patch scenario changes them); answers how many. Autocommit connection."""
    if not _exists(connection, SCENARIO_ROWS_TABLE):
        return 0
    columns = [c for c in _stored_columns(connection, SCENARIO_ROWS_TABLE) if c != "id"]

    def row(alias: str) -> sql.Composable:
        return sql.SQL("ROW({})").format(
            sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns)
        )

    return connection.execute(
        sql.SQL(
            "UPDATE {} AS t SET ({}) = {} FROM {} AS s "
            "WHERE t.id = s.id AND {}::text IS DISTINCT FROM {}::text"
        ).format(
            sql.Identifier(schema.failed_table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            row("s"),
            sql.Identifier(SCENARIO_ROWS_TABLE),
            row("t"),
            row("s"),
        )
    ).rowcount


def _record_seed(
    connection: psycopg.Connection, rows: int, channels: int, anchor: dt.datetime
) -> None:
    table = sql.Identifier(SEED_TABLE)
    connection.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (rows bigint NOT NULL, channels integer NOT NULL, "
            "seeded_at timestamptz NOT NULL DEFAULT now())"
        ).format(table)
    )
    connection.execute(
        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS anchor timestamptz").format(table)
    )
    connection.execute(sql.SQL("DELETE FROM {}").format(table))
    connection.execute(
        sql.SQL("INSERT INTO {} (rows, channels, anchor) VALUES (%s, %s, %s)").format(table),
        (rows, channels, anchor),
    )


def content_type_ids(connection: psycopg.Connection) -> dict[tuple[str, str], int]:
    ids = {}
    for app_label, model, _ in CONTENT_TYPES:
        row = connection.execute(
            "SELECT id FROM django_content_type WHERE app_label = %s AND model = %s",
            (app_label, model),
        ).fetchone()
        if row is None:
            raise SystemExit(
                f"Content type {app_label}.{model} is missing: were the migrations applied?"
            )
        ids[(app_label, model)] = row[0]
    return ids


def _cumulative(weights: list[float]) -> list[float]:
    return list(itertools.accumulate(weights))


def _failed_rows(
    rng: random.Random,
    rows: int,
    channel_ids: list[int],
    type_ids: dict[tuple[str, str], int],
    now: dt.datetime,
    largest_share: float | None = None,
):
    """(channel_id, version_date, reason_type, is_active, content_type_id, object_id,
    expiration_date, retry_count, max_retry_count, retry_interval, log_id, created_date,
    modified_date) for `rows` failures created over the past year, in time order."""
    weights = [1 / (k + 1) ** CHANNEL_SKEW for k in range(len(channel_ids))]
    if largest_share is not None and len(weights) > 1:
        # The first channel holds this share of the rows; the others share the rest, Zipf-like.
        weights[0] = largest_share / (1 - largest_share) * sum(weights[1:])
    channel_weights = _cumulative(weights)
    channels = rng.choices(channel_ids, cum_weights=channel_weights, k=rows)
    reasons = rng.choices(
        [r for r, _ in REASON_TYPES], cum_weights=_cumulative([w for _, w in REASON_TYPES]), k=rows
    )
    types = rng.choices(
        [type_ids[(a, m)] for a, m, _ in CONTENT_TYPES],
        cum_weights=_cumulative([w for _, _, w in CONTENT_TYPES]),
        k=rows,
    )
    now_s = now.timestamp()
    start = now_s - YEAR.total_seconds()
    step = YEAR.total_seconds() / rows
    month = 30 * 86400
    from_ts = dt.datetime.fromtimestamp
    random_ = rng.random
    for i in range(rows):
        created = start + (i + random_()) * step
        modified = min(created + random_() * month, now_s)
        version = created - random_() * 600
        roll = random_()
        if roll < 0.5:
            expiration = None
        elif roll < 0.75:  # expired: some time after it failed, before now
            expiration = from_ts(created + (now_s - created) * random_(), UTC)
        else:  # expires within the next three months
            expiration = from_ts(now_s + random_() * 3 * month, UTC)
        yield (
            channels[i],
            from_ts(version, UTC),
            reasons[i],
            random_() < ACTIVE_SHARE,
            types[i],
            1 + int(random_() * 5_000_000),  # object_id
            expiration,
            int(random_() * 6),  # retry_count 0..5
            1 + int(random_() * 5),  # max_retry_count 1..5
            int(random_() * 3601),  # retry_interval 0..3600 s
            None if random_() < 0.3 else 1 + int(random_() * 2_000_000_000),  # log_id
            from_ts(created, UTC),
            from_ts(modified, UTC),
        )


FAILED_COLUMNS = (
    "channel_id",
    "version_date",
    "reason_type",
    "is_active",
    "content_type_id",
    "object_id",
    "expiration_date",
    "retry_count",
    "max_retry_count",
    "retry_interval",
    "log_id",
    "created_date",
    "modified_date",
)
CHANNEL_COLUMNS = (
    "name",
    "channel_type",
    "is_active",
    "retry_endpoint",
    "signing_secret",
    "created_date",
    "modified_date",
)
CHANNEL_TYPES = ("marketplace", "marketplace", "marketplace", "web", "mobile_app", "pos")


def seed(
    db_url: str,
    *,
    rows: int,
    channels: int,
    model_defaults: dict[str, dict[str, object]] | None = None,
    log=print,
    largest_share: float | None = None,
    anchor: dt.datetime | None = None,
    schema: Schema = SERVICE,
) -> dt.datetime:
    """Empties the tables of `schema` and fills them: `channels` channels, `rows` failures.
    `model_defaults` ({table: {column: value}}) fills required columns the seeder does not
    know. The rows' dates are reckoned back from `anchor` (default: now); the same arguments
    write the same rows, in whichever database. Answers the anchor."""
    model_defaults = model_defaults or {}
    rng = random.Random(SEED)
    # Values of required columns the seeder does not name (a uuid's) are drawn from a generator
    # of their own, so that such a column does not change the rows in the others.
    extra_rng = random.Random(SEED + 1)
    now = (anchor or dt.datetime.now(UTC)).astimezone(UTC)
    with psycopg.connect(db_url) as connection:
        connection.execute("SET synchronous_commit = off")
        type_ids = content_type_ids(connection)
        connection.execute(
            sql.SQL("TRUNCATE {}, {}, {} RESTART IDENTITY CASCADE").format(
                sql.Identifier(schema.failed_table),
                sql.Identifier(schema.action_table),
                sql.Identifier(schema.channel_table),
            )
        )

        # The channels' columns that the table has (an implementation of the contract needs
        # little of a channel but its id); the failures' columns must all be there.
        present = column_types(connection, schema.channel_table)
        channel_columns = [c for c in CHANNEL_COLUMNS if c in present]
        extra = extra_required_columns(
            connection,
            schema.channel_table,
            set(CHANNEL_COLUMNS),
            extra_rng,
            model_defaults.get(schema.channel_table, {}),
        )
        columns = [*channel_columns, *extra]
        insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(schema.channel_table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        )
        values = []
        for k in range(channels):
            channel = {
                "name": f"Bench channel {k + 1}",
                "channel_type": CHANNEL_TYPES[k % len(CHANNEL_TYPES)],
                "is_active": True,
                "retry_endpoint": "",
                "signing_secret": "",
                "created_date": now - YEAR,
                "modified_date": now - YEAR,
            }
            values.append(
                (*(channel[c] for c in channel_columns), *(_value(v) for v in extra.values()))
            )
        with connection.cursor() as cursor:
            cursor.executemany(insert, values)
        channel_ids = [
            r[0]
            for r in connection.execute(
                sql.SQL("SELECT id FROM {} ORDER BY id").format(
                    sql.Identifier(schema.channel_table)
                )
            )
        ]

        types = column_types(connection, schema.failed_table)
        missing = [c for c in FAILED_COLUMNS if c not in types]
        if missing:
            raise SystemExit(
                f"{schema.failed_table} has no column {', '.join(missing)}: the seeder writes "
                "every one of " + ", ".join(FAILED_COLUMNS)
            )
        extra = extra_required_columns(
            connection,
            schema.failed_table,
            set(FAILED_COLUMNS),
            extra_rng,
            model_defaults.get(schema.failed_table, {}),
        )
        if extra:
            log(f"   (also filling {', '.join(extra)} with their defaults: required columns)")
        copy_columns = [*FAILED_COLUMNS, *extra]
        copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(schema.failed_table),
            sql.SQL(", ").join(map(sql.Identifier, copy_columns)),
        )
        started = time.monotonic()
        rebuild = _drop_secondary_indexes_and_foreign_keys(connection, schema.failed_table)
        with connection.cursor() as cursor, cursor.copy(copy) as writer:
            writer.set_types([types[column] for column in copy_columns])
            generated = _failed_rows(rng, rows, channel_ids, type_ids, now, largest_share)
            if extra:
                extras = list(extra.values())
                for row in generated:
                    writer.write_row((*row, *(_value(v) for v in extras)))
            else:
                for row in generated:
                    writer.write_row(row)
        copied = time.monotonic()
        log(f"   copied {rows:,} rows in {copied - started:.1f} s")
        connection.execute("SET maintenance_work_mem = '256MB'")
        for statement in rebuild:
            connection.execute(statement)
        _copy_scenario_rows(connection, schema, rows)
        _record_seed(connection, rows, channels, now)
        connection.commit()
        log(
            f"   rebuilt {len(rebuild)} indexes and foreign keys in "
            f"{time.monotonic() - copied:.1f} s"
        )
    vacuum(db_url)
    return now


def _drop_secondary_indexes_and_foreign_keys(
    connection: psycopg.Connection, table: str
) -> list[sql.Composable]:
    """Drops the indexes (but the primary key's and constraints') and foreign keys of `table`
    and answers the statements that make them again exactly as they were, to be run after the
    COPY in the same transaction: building an index once is much faster than growing it row by
    row, and one check of a foreign key than a million. Triggers are left as they are."""
    indexes = connection.execute(
        """
        SELECT c.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = %s::regclass AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        ORDER BY 1
        """,
        (table,),
    ).fetchall()
    foreign_keys = connection.execute(
        """
        SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = %s::regclass AND contype = 'f' ORDER BY conname
        """,
        (table,),
    ).fetchall()
    rebuild: list[sql.Composable] = []
    for name, definition in indexes:
        connection.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
        rebuild.append(sql.SQL(definition))
    for name, definition in foreign_keys:
        connection.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                sql.Identifier(table), sql.Identifier(name)
            )
        )
        rebuild.append(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                sql.Identifier(table), sql.Identifier(name), sql.SQL(definition)
            )
        )
    return rebuild


def vacuum(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    checkpoint(db_url)


def checkpoint(db_url: str) -> None:
    """Writes dirty pages out now, so that a measured run does not pay for an earlier load."""
    # A user without the right to: the runs are only a little noisier.
    with (
        psycopg.connect(db_url, autocommit=True) as connection,
        contextlib.suppress(psycopg.errors.InsufficientPrivilege),
    ):
        connection.execute("CHECKPOINT")


# --- between scenarios ---------------------------------------------------------------------


def take_back_writes(db_url: str, seed_max_id: int, schema: Schema = SERVICE) -> int:
    """Deletes the records that a write scenario added (ids above the seeded ones), and rows
    of tables that point at them, and puts the seeded records that the patch scenario changed
    back as they were, so that every peer and every run sees the same data. Answers the number
    of records deleted."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        children = connection.execute(
            """
            SELECT c.conrelid::regclass::text, a.attname
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
            WHERE c.contype = 'f' AND c.confrelid = %s::regclass
              AND array_length(c.conkey, 1) = 1
            """,
            (schema.failed_table,),
        ).fetchall()
        for table, column in children:
            connection.execute(
                sql.SQL("DELETE FROM {} WHERE {} > %s").format(
                    sql.Identifier(table), sql.Identifier(column)
                ),
                (seed_max_id,),
            )
        deleted = connection.execute(
            sql.SQL("DELETE FROM {} WHERE id > %s").format(sql.Identifier(schema.failed_table)),
            (seed_max_id,),
        ).rowcount
        restored = restore_scenario_rows(connection, schema)
        if deleted or restored:
            connection.execute(
                sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(schema.failed_table))
            )
        fold_counts(connection)
    checkpoint(db_url)
    return deleted


def fold_counts(connection: psycopg.Connection) -> None:
    """Does what the service's worker does every 30 s: folds the count deltas that writes left
    (PostgreSQL only, autocommit connection) and vacuums the count tables, so that every peer
    and round starts from the same state."""
    exists = connection.execute("SELECT to_regclass('fi_count_cube_delta')").fetchone()[0]
    if exists is None:
        return
    connection.execute(
        "SELECT fi_count_compact(channel_id) FROM (SELECT DISTINCT channel_id FROM "
        "fi_count_cube_delta UNION SELECT DISTINCT channel_id FROM fi_count_hist_delta) AS c"
    )
    connection.execute(
        "VACUUM (ANALYZE) fi_count_cube_delta, fi_count_hist_delta, fi_count_cube, fi_count_hist"
    )


def last_id(db_url: str, schema: Schema = SERVICE) -> int:
    """The last id the failed integrations' id sequence gave (0 before any)."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        return connection.execute(
            "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence(%s, 'id')::regclass),"
            " 0)",
            (schema.failed_table,),
        ).fetchone()[0]


def count_ids(db_url: str, after: int, upto: int, schema: Schema = SERVICE) -> int:
    """The records that exist with an id in (after, upto]."""
    with psycopg.connect(db_url, autocommit=True) as connection:
        return connection.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE id > %s AND id <= %s").format(
                sql.Identifier(schema.failed_table)
            ),
            (after, upto),
        ).fetchone()[0]


@dataclass(frozen=True)
class Fixture:
    """What the scenarios address: a channel of typical size and some of its records."""

    channel_id: int
    channel_rows: int
    ids: list[int]
    content_type_ids: list[int]
    product_type_id: int


def median_channel(
    connection: psycopg.Connection, schema: Schema, seed_max_id: int
) -> tuple[int, int]:
    """The channel with the median number of seeded rows (the scenarios' channel), and that
    number."""
    counts = connection.execute(
        sql.SQL(
            "SELECT channel_id, count(*) FROM {} WHERE id <= %s "
            "GROUP BY channel_id ORDER BY count(*), channel_id"
        ).format(sql.Identifier(schema.failed_table)),
        (seed_max_id,),
    ).fetchall()
    return counts[len(counts) // 2]


def fixture(
    db_url: str, *, seed_max_id: int, sample: int = 1000, schema: Schema = SERVICE
) -> Fixture:
    with psycopg.connect(db_url) as connection:
        channel_id, channel_rows = median_channel(connection, schema, seed_max_id)
        ids = [
            r[0]
            for r in connection.execute(
                sql.SQL("SELECT id FROM {} WHERE channel_id = %s AND id <= %s ORDER BY id").format(
                    sql.Identifier(schema.failed_table)
                ),
                (channel_id, seed_max_id),
            )
        ]
        types = content_type_ids(connection)
    rng = random.Random(SEED)
    return Fixture(
        channel_id=channel_id,
        channel_rows=channel_rows,
        ids=rng.sample(ids, min(sample, len(ids))),
        content_type_ids=list(types.values()),
        product_type_id=types[("products", "product")],
    )


@dataclass(frozen=True)
class Fingerprint:
    """What must be equal in two databases for their peers to be measured on the same data:
    the integrable content types' ids, and per channel the number of seeded rows and a hash of
    their contents (every seeded column, the id included)."""

    content_types: tuple[tuple[str, str, int], ...]
    channels: tuple[tuple[int, int, int], ...]  # (channel id, rows, hash)

    def differences(self, other: Fingerprint) -> list[str]:
        found = []
        if self.content_types != other.content_types:
            found.append(f"content types {self.content_types} vs {other.content_types}")
        mine, theirs = dict(_by_channel(self)), dict(_by_channel(other))
        for channel in sorted(set(mine) | set(theirs)):
            a, b = mine.get(channel), theirs.get(channel)
            if a is None or b is None or a[0] != b[0]:
                found.append(
                    f"channel {channel}: {a[0] if a else 0:,} vs {b[0] if b else 0:,} rows"
                )
            elif a[1] != b[1]:
                found.append(f"channel {channel}: same {a[0]:,} rows, different contents")
        return found


def _by_channel(fingerprint: Fingerprint):
    return ((c, (rows, digest)) for c, rows, digest in fingerprint.channels)


def fingerprint(db_url: str, *, seed_max_id: int, schema: Schema = SERVICE) -> Fingerprint:
    """The fingerprint of the seeded rows (ids 1..seed_max_id) of `schema` in the database."""
    columns = sql.SQL(", ").join(map(sql.Identifier, ("id", *FAILED_COLUMNS)))
    with psycopg.connect(db_url) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        channels = connection.execute(
            sql.SQL(
                "SELECT channel_id, count(*), "
                "sum(hashtextextended(ROW({})::text, 0))::text "
                "FROM {} WHERE id <= %s GROUP BY channel_id ORDER BY channel_id"
            ).format(columns, sql.Identifier(schema.failed_table)),
            (seed_max_id,),
        ).fetchall()
        types = content_type_ids(connection)
    return Fingerprint(
        content_types=tuple((a, m, i) for (a, m), i in sorted(types.items())),
        channels=tuple((c, n, int(h)) for c, n, h in channels),
    )
