"""The counts keep records per hour of `resolved_at` too (histogram 11), for the console's chart
and the list's `resolved_at` range counts. The count tables, functions and triggers are made
anew and recount the rows already there. The SQL is the one this migration first ran, as text
(see 0003). Backwards restores the counts of 0016.
"""

import importlib

from django.db import migrations

# Byte for byte what ran, spaces at the ends of lines included: they are part of the function
# bodies that PostgreSQL stores.
INSTALL_SQL = """
CREATE TABLE fi_count_cube (
    channel_id bigint NOT NULL,
    reason_type varchar(15) NOT NULL,
    is_active boolean NOT NULL,
    content_type_id integer NOT NULL,
    exhausted boolean NOT NULL,
    parked boolean NOT NULL,
    resolution varchar(16) NOT NULL,
    n bigint NOT NULL,
    PRIMARY KEY (channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution)
);
CREATE TABLE fi_count_cube_delta (
    id bigserial PRIMARY KEY,
    channel_id bigint NOT NULL,
    reason_type varchar(15) NOT NULL,
    is_active boolean NOT NULL,
    content_type_id integer NOT NULL,
    exhausted boolean NOT NULL,
    parked boolean NOT NULL,
    resolution varchar(16) NOT NULL,
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


CREATE OR REPLACE FUNCTION fi_count_hour(ts timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT floor(extract(epoch FROM ts - '1970-01-01 00:00:00+00'::timestamptz) / 3600)::bigint $$;

CREATE FUNCTION fi_count_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN 
        INSERT INTO fi_count_cube_delta (channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, n)
        SELECT channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, count(*) FROM new_rows GROUP BY channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution;
        INSERT INTO fi_count_hist_delta (channel_id, dim, value, n)
        SELECT r.channel_id, d.dim, d.value, count(*)
        FROM new_rows r CROSS JOIN LATERAL (VALUES (1::smallint, (r.retry_count)::bigint), (2::smallint, (r.max_retry_count)::bigint), (3::smallint, (r.retry_interval)::bigint), (4::smallint, (coalesce(fi_count_hour(r.version_date), -9223372036854775808))::bigint), (5::smallint, (coalesce(fi_count_hour(r.expiration_date), -9223372036854775808))::bigint), (6::smallint, (coalesce(fi_count_hour(r.created_date), -9223372036854775808))::bigint), (7::smallint, (coalesce(fi_count_hour(r.modified_date), -9223372036854775808))::bigint), (8::smallint, ((r.integration_action_id IS NULL)::int)::bigint), (9::smallint, ((r.log_id IS NULL)::int)::bigint), (11::smallint, (coalesce(fi_count_hour(r.resolved_at), -9223372036854775808))::bigint), (10::smallint, (fi_count_hour(r.created_date) * 16 + CASE r.reason_type WHEN 'mapping' THEN 0 WHEN 'remote' THEN 1 WHEN 'channel_app' THEN 2 ELSE 15 END)::bigint)) AS d(dim, value)
        GROUP BY r.channel_id, d.dim, d.value;
     RETURN NULL; END $$;

CREATE OR REPLACE FUNCTION fi_count_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN 
        INSERT INTO fi_count_cube_delta (channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, n)
        SELECT c.channel_id, c.reason_type, c.is_active, c.content_type_id, c.exhausted, c.parked, c.resolution, sum(c.n)
        FROM old_rows o JOIN new_rows r ON r.id = o.id
        CROSS JOIN LATERAL (VALUES (o.channel_id, o.reason_type, o.is_active, o.content_type_id, o.exhausted, o.parked, o.resolution, -1), (r.channel_id, r.reason_type, r.is_active, r.content_type_id, r.exhausted, r.parked, r.resolution, 1))
            AS c(channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, n)
        WHERE (o.channel_id, o.reason_type, o.is_active, o.content_type_id, o.exhausted, o.parked, o.resolution) IS DISTINCT FROM (r.channel_id, r.reason_type, r.is_active, r.content_type_id, r.exhausted, r.parked, r.resolution)
        GROUP BY c.channel_id, c.reason_type, c.is_active, c.content_type_id, c.exhausted, c.parked, c.resolution
        HAVING sum(c.n) <> 0;
        INSERT INTO fi_count_hist_delta (channel_id, dim, value, n)
        SELECT h.channel_id, h.dim, h.value, sum(h.n)
        FROM old_rows o JOIN new_rows r ON r.id = o.id
        CROSS JOIN LATERAL (VALUES (1::smallint, (o.retry_count)::bigint, (r.retry_count)::bigint), (2::smallint, (o.max_retry_count)::bigint, (r.max_retry_count)::bigint), (3::smallint, (o.retry_interval)::bigint, (r.retry_interval)::bigint), (4::smallint, (coalesce(fi_count_hour(o.version_date), -9223372036854775808))::bigint, (coalesce(fi_count_hour(r.version_date), -9223372036854775808))::bigint), (5::smallint, (coalesce(fi_count_hour(o.expiration_date), -9223372036854775808))::bigint, (coalesce(fi_count_hour(r.expiration_date), -9223372036854775808))::bigint), (6::smallint, (coalesce(fi_count_hour(o.created_date), -9223372036854775808))::bigint, (coalesce(fi_count_hour(r.created_date), -9223372036854775808))::bigint), (7::smallint, (coalesce(fi_count_hour(o.modified_date), -9223372036854775808))::bigint, (coalesce(fi_count_hour(r.modified_date), -9223372036854775808))::bigint), (8::smallint, ((o.integration_action_id IS NULL)::int)::bigint, ((r.integration_action_id IS NULL)::int)::bigint), (9::smallint, ((o.log_id IS NULL)::int)::bigint, ((r.log_id IS NULL)::int)::bigint), (11::smallint, (coalesce(fi_count_hour(o.resolved_at), -9223372036854775808))::bigint, (coalesce(fi_count_hour(r.resolved_at), -9223372036854775808))::bigint), (10::smallint, (fi_count_hour(o.created_date) * 16 + CASE o.reason_type WHEN 'mapping' THEN 0 WHEN 'remote' THEN 1 WHEN 'channel_app' THEN 2 ELSE 15 END)::bigint, (fi_count_hour(r.created_date) * 16 + CASE r.reason_type WHEN 'mapping' THEN 0 WHEN 'remote' THEN 1 WHEN 'channel_app' THEN 2 ELSE 15 END)::bigint)) AS d(dim, old_value, new_value)
        CROSS JOIN LATERAL (
            VALUES (o.channel_id, d.dim, d.old_value, -1), (r.channel_id, d.dim, d.new_value, 1)
        ) AS h(channel_id, dim, value, n)
        WHERE d.old_value IS DISTINCT FROM d.new_value OR o.channel_id <> r.channel_id
        GROUP BY h.channel_id, h.dim, h.value
        HAVING sum(h.n) <> 0;
     RETURN NULL; END $$;
CREATE FUNCTION fi_count_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN 
        INSERT INTO fi_count_cube_delta (channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, n)
        SELECT channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, -count(*) FROM old_rows GROUP BY channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution;
        INSERT INTO fi_count_hist_delta (channel_id, dim, value, n)
        SELECT r.channel_id, d.dim, d.value, -count(*)
        FROM old_rows r CROSS JOIN LATERAL (VALUES (1::smallint, (r.retry_count)::bigint), (2::smallint, (r.max_retry_count)::bigint), (3::smallint, (r.retry_interval)::bigint), (4::smallint, (coalesce(fi_count_hour(r.version_date), -9223372036854775808))::bigint), (5::smallint, (coalesce(fi_count_hour(r.expiration_date), -9223372036854775808))::bigint), (6::smallint, (coalesce(fi_count_hour(r.created_date), -9223372036854775808))::bigint), (7::smallint, (coalesce(fi_count_hour(r.modified_date), -9223372036854775808))::bigint), (8::smallint, ((r.integration_action_id IS NULL)::int)::bigint), (9::smallint, ((r.log_id IS NULL)::int)::bigint), (11::smallint, (coalesce(fi_count_hour(r.resolved_at), -9223372036854775808))::bigint), (10::smallint, (fi_count_hour(r.created_date) * 16 + CASE r.reason_type WHEN 'mapping' THEN 0 WHEN 'remote' THEN 1 WHEN 'channel_app' THEN 2 ELSE 15 END)::bigint)) AS d(dim, value)
        GROUP BY r.channel_id, d.dim, d.value;
     RETURN NULL; END $$;
CREATE FUNCTION fi_count_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE fi_count_cube, fi_count_cube_delta, fi_count_hist, fi_count_hist_delta;
    RETURN NULL;
END $$;

CREATE TRIGGER fi_count_insert AFTER INSERT ON integrations_failedintegration
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION fi_count_after_insert();
CREATE TRIGGER fi_count_update AFTER UPDATE ON integrations_failedintegration
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fi_count_after_update();
CREATE TRIGGER fi_count_delete AFTER DELETE ON integrations_failedintegration
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION fi_count_after_delete();
CREATE TRIGGER fi_count_truncate AFTER TRUNCATE ON integrations_failedintegration
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
        RETURNING channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, n
    )
    INSERT INTO fi_count_cube AS c (channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, n)
    SELECT channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, sum(n) FROM moved
    GROUP BY channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution
    ORDER BY channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution
    ON CONFLICT (channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution) DO UPDATE SET n = c.n + excluded.n;
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
INSERT INTO fi_count_cube_delta (channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, n)
SELECT channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution, count(*) FROM integrations_failedintegration
GROUP BY channel_id, reason_type, is_active, content_type_id, exhausted, parked, resolution;
INSERT INTO fi_count_hist_delta (channel_id, dim, value, n)
SELECT r.channel_id, d.dim, d.value, count(*)
FROM integrations_failedintegration r CROSS JOIN LATERAL (VALUES (1::smallint, (r.retry_count)::bigint), (2::smallint, (r.max_retry_count)::bigint), (3::smallint, (r.retry_interval)::bigint), (4::smallint, (coalesce(fi_count_hour(r.version_date), -9223372036854775808))::bigint), (5::smallint, (coalesce(fi_count_hour(r.expiration_date), -9223372036854775808))::bigint), (6::smallint, (coalesce(fi_count_hour(r.created_date), -9223372036854775808))::bigint), (7::smallint, (coalesce(fi_count_hour(r.modified_date), -9223372036854775808))::bigint), (8::smallint, ((r.integration_action_id IS NULL)::int)::bigint), (9::smallint, ((r.log_id IS NULL)::int)::bigint), (11::smallint, (coalesce(fi_count_hour(r.resolved_at), -9223372036854775808))::bigint), (10::smallint, (fi_count_hour(r.created_date) * 16 + CASE r.reason_type WHEN 'mapping' THEN 0 WHEN 'remote' THEN 1 WHEN 'channel_app' THEN 2 ELSE 15 END)::bigint)) AS d(dim, value)
GROUP BY r.channel_id, d.dim, d.value;
SELECT fi_count_compact(channel_id) FROM (SELECT DISTINCT channel_id FROM fi_count_cube_delta) c;
"""  # noqa: W291, E501

UNINSTALL_SQL = """
DROP TRIGGER IF EXISTS fi_count_insert ON integrations_failedintegration;
DROP TRIGGER IF EXISTS fi_count_update ON integrations_failedintegration;
DROP TRIGGER IF EXISTS fi_count_delete ON integrations_failedintegration;
DROP TRIGGER IF EXISTS fi_count_truncate ON integrations_failedintegration;
DROP FUNCTION IF EXISTS fi_count_after_insert, fi_count_after_update, fi_count_after_delete,
    fi_count_after_truncate, fi_count_compact, fi_count_hour;
DROP TABLE IF EXISTS fi_count_cube, fi_count_cube_delta, fi_count_hist, fi_count_hist_delta;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNINSTALL_SQL, params=None)
        schema_editor.execute(INSTALL_SQL, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        previous = importlib.import_module("integrations.migrations.0016_state_counts")
        schema_editor.execute(UNINSTALL_SQL, params=None)
        schema_editor.execute(previous.INSTALL_SQL, params=None)


class Migration(migrations.Migration):
    dependencies = [("integrations", "0017_worker_heartbeats")]

    operations = [migrations.RunPython(forwards, backwards)]
