"""Cheaper count triggers: the hour function is inlined by the planner, and the update trigger
appends deltas only for rows whose counted values changed (a worker's lease update appends
nothing).

The SQL is the one this migration first ran, as text (see 0003). Backwards restores the
definitions of 0003, so that a database taken back to 0006 has 0006's functions.
"""

from django.db import migrations

# Byte for byte what ran, spaces at the ends of lines included: they are part of the function
# bodies that PostgreSQL stores.
HOUR_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION fi_count_hour(ts timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT floor(extract(epoch FROM ts - '1970-01-01 00:00:00+00'::timestamptz) / 3600)::bigint $$;
"""

UPDATE_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION fi_count_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN 
        INSERT INTO fi_count_cube_delta (channel_id, reason_type, is_active, content_type_id, exhausted, n)
        SELECT c.channel_id, c.reason_type, c.is_active, c.content_type_id, c.exhausted, sum(c.n)
        FROM old_rows o JOIN new_rows r ON r.id = o.id
        CROSS JOIN LATERAL (VALUES (o.channel_id, o.reason_type, o.is_active, o.content_type_id, o.exhausted, -1), (r.channel_id, r.reason_type, r.is_active, r.content_type_id, r.exhausted, 1))
            AS c(channel_id, reason_type, is_active, content_type_id, exhausted, n)
        WHERE (o.channel_id, o.reason_type, o.is_active, o.content_type_id, o.exhausted) IS DISTINCT FROM (r.channel_id, r.reason_type, r.is_active, r.content_type_id, r.exhausted)
        GROUP BY c.channel_id, c.reason_type, c.is_active, c.content_type_id, c.exhausted
        HAVING sum(c.n) <> 0;
        INSERT INTO fi_count_hist_delta (channel_id, dim, value, n)
        SELECT h.channel_id, h.dim, h.value, sum(h.n)
        FROM old_rows o JOIN new_rows r ON r.id = o.id
        CROSS JOIN LATERAL (VALUES (1::smallint, (o.retry_count)::bigint, (r.retry_count)::bigint), (2::smallint, (o.max_retry_count)::bigint, (r.max_retry_count)::bigint), (3::smallint, (o.retry_interval)::bigint, (r.retry_interval)::bigint), (4::smallint, (coalesce(fi_count_hour(o.version_date), -9223372036854775808))::bigint, (coalesce(fi_count_hour(r.version_date), -9223372036854775808))::bigint), (5::smallint, (coalesce(fi_count_hour(o.expiration_date), -9223372036854775808))::bigint, (coalesce(fi_count_hour(r.expiration_date), -9223372036854775808))::bigint), (6::smallint, (coalesce(fi_count_hour(o.created_date), -9223372036854775808))::bigint, (coalesce(fi_count_hour(r.created_date), -9223372036854775808))::bigint), (7::smallint, (coalesce(fi_count_hour(o.modified_date), -9223372036854775808))::bigint, (coalesce(fi_count_hour(r.modified_date), -9223372036854775808))::bigint), (8::smallint, ((o.integration_action_id IS NULL)::int)::bigint, ((r.integration_action_id IS NULL)::int)::bigint), (9::smallint, ((o.log_id IS NULL)::int)::bigint, ((r.log_id IS NULL)::int)::bigint)) AS d(dim, old_value, new_value)
        CROSS JOIN LATERAL (
            VALUES (o.channel_id, d.dim, d.old_value, -1), (r.channel_id, d.dim, d.new_value, 1)
        ) AS h(channel_id, dim, value, n)
        WHERE d.old_value IS DISTINCT FROM d.new_value OR o.channel_id <> r.channel_id
        GROUP BY h.channel_id, h.dim, h.value
        HAVING sum(h.n) <> 0;
     RETURN NULL; END $$;
"""  # noqa: W291

# The two functions as 0003 created them, bodies unchanged.
PREVIOUS_HOUR_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION fi_count_hour(ts timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT floor(extract(epoch FROM ts) / 3600)::bigint $$;
"""

PREVIOUS_UPDATE_FUNCTION_SQL = """
CREATE OR REPLACE FUNCTION fi_count_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN 
        INSERT INTO fi_count_cube_delta (channel_id, reason_type, is_active, content_type_id, exhausted, n)
        SELECT channel_id, reason_type, is_active, content_type_id, exhausted, sum(n) FROM (
            SELECT channel_id, reason_type, is_active, content_type_id, exhausted, 1 AS n FROM new_rows
            UNION ALL SELECT channel_id, reason_type, is_active, content_type_id, exhausted, -1 FROM old_rows
        ) changes GROUP BY channel_id, reason_type, is_active, content_type_id, exhausted HAVING sum(n) <> 0;
        INSERT INTO fi_count_hist_delta (channel_id, dim, value, n)
        SELECT channel_id, dim, value, sum(n) FROM (
            SELECT r.channel_id, d.dim, d.value, 1 AS n
            FROM new_rows r CROSS JOIN LATERAL (VALUES (1::smallint, (r.retry_count)::bigint), (2::smallint, (r.max_retry_count)::bigint), (3::smallint, (r.retry_interval)::bigint), (4::smallint, (coalesce(fi_count_hour(r.version_date), -9223372036854775808))::bigint), (5::smallint, (coalesce(fi_count_hour(r.expiration_date), -9223372036854775808))::bigint), (6::smallint, (coalesce(fi_count_hour(r.created_date), -9223372036854775808))::bigint), (7::smallint, (coalesce(fi_count_hour(r.modified_date), -9223372036854775808))::bigint), (8::smallint, ((r.integration_action_id IS NULL)::int)::bigint), (9::smallint, ((r.log_id IS NULL)::int)::bigint)) AS d(dim, value)
            UNION ALL
            SELECT r.channel_id, d.dim, d.value, -1
            FROM old_rows r CROSS JOIN LATERAL (VALUES (1::smallint, (r.retry_count)::bigint), (2::smallint, (r.max_retry_count)::bigint), (3::smallint, (r.retry_interval)::bigint), (4::smallint, (coalesce(fi_count_hour(r.version_date), -9223372036854775808))::bigint), (5::smallint, (coalesce(fi_count_hour(r.expiration_date), -9223372036854775808))::bigint), (6::smallint, (coalesce(fi_count_hour(r.created_date), -9223372036854775808))::bigint), (7::smallint, (coalesce(fi_count_hour(r.modified_date), -9223372036854775808))::bigint), (8::smallint, ((r.integration_action_id IS NULL)::int)::bigint), (9::smallint, ((r.log_id IS NULL)::int)::bigint)) AS d(dim, value)
        ) changes GROUP BY channel_id, dim, value HAVING sum(n) <> 0;
     RETURN NULL; END $$;
"""  # noqa: W291


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(HOUR_FUNCTION_SQL, params=None)
        schema_editor.execute(UPDATE_FUNCTION_SQL, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(PREVIOUS_HOUR_FUNCTION_SQL, params=None)
        schema_editor.execute(PREVIOUS_UPDATE_FUNCTION_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("integrations", "0006_channel_grants")]

    operations = [migrations.RunPython(forwards, backwards)]
