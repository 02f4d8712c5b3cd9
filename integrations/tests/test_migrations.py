"""Migrations are history, and they add up to today's code: a database migrated from zero has
the schema that the models and the counting SQL of counts.py describe, every migration undoes
itself exactly, and no model change lacks its migration."""

from __future__ import annotations

import difflib
import io
from contextlib import contextmanager

import pytest
from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor

from integrations.counting import counts

pytestmark = pytest.mark.django_db

PROJECT_APPS = ("accounts", "integrations")
# The objects compared: the project's tables, the count tables of counts.py, and the cache
# table that an accounts migration creates.
TABLE_PREFIXES = ("integrations_", "accounts_", "fi_")
CACHE_TABLES = tuple(
    cache["LOCATION"]
    for cache in settings.CACHES.values()
    if cache["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
)
# Built inside a transaction that is rolled back; every xdist worker has a database of its own.
MODELS_SCHEMA = "schema_from_models"

OWN_RELATIONS = """
    SELECT c.oid FROM pg_class c
    WHERE c.relnamespace = %(schema)s::regnamespace
        AND (c.relname LIKE ANY (%(prefixes)s) OR c.relname = ANY (%(cache_tables)s))
"""

# Each row ends with the definition that PostgreSQL renders, if the kind has one.
QUERIES = {
    # Tables, views, sequences.
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, c.reloptions::text
        FROM pg_class c
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND c.oid = ANY (%(own)s::oid[])
    """,
    # By name, not by position: a column that a migration added comes last, the models put it
    # where the field is declared, and nothing reads columns by position.
    "columns": """
        SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
            a.attidentity, a.attgenerated, co.collname, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        LEFT JOIN pg_collation co ON co.oid = a.attcollation
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND c.oid = ANY (%(own)s::oid[])
    """,
    "sequences": """
        SELECT c.relname, s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmin,
            s.seqmax, s.seqcache, s.seqcycle
        FROM pg_class c JOIN pg_sequence s ON s.seqrelid = c.oid
        WHERE c.oid = ANY (%(own)s::oid[])
    """,
    "indexes": """
        SELECT c.relname, pg_get_indexdef(i.indexrelid)
        FROM pg_class c JOIN pg_index i ON i.indrelid = c.oid
        WHERE c.oid = ANY (%(own)s::oid[])
    """,
    "constraints": """
        SELECT c.relname, k.conname, k.contype, k.convalidated, pg_get_constraintdef(k.oid)
        FROM pg_class c JOIN pg_constraint k ON k.conrelid = c.oid
        WHERE c.oid = ANY (%(own)s::oid[])
    """,
    "triggers": """
        SELECT c.relname, t.tgname, t.tgenabled, pg_get_triggerdef(t.oid)
        FROM pg_class c JOIN pg_trigger t ON t.tgrelid = c.oid
        WHERE NOT t.tgisinternal AND c.oid = ANY (%(own)s::oid[])
    """,
    # Every function of the schema but an extension's, whatever its name: a trigger's function
    # or a helper that one side has and the other lacks shows up.
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
        FROM pg_proc p
        WHERE p.pronamespace = %(schema)s::regnamespace AND p.prokind <> 'a'
            AND NOT EXISTS (
                SELECT FROM pg_depend e
                WHERE e.classid = 'pg_proc'::regclass AND e.objid = p.oid AND e.deptype = 'e'
            )
    """,
}


@contextmanager
def search_path(schema: str):
    """Definitions come back with the names of the objects visible on the search path
    unqualified: inspecting each schema with it alone on the path renders both alike."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('search_path')")
        previous = cursor.fetchone()[0]
        cursor.execute("SELECT set_config('search_path', %s, true)", [schema])
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config('search_path', %s, true)", [previous])


def unqualified(schema: str, kind: str, definition: str) -> str:
    """PostgreSQL qualifies the table of an index or a trigger, and a function's own name,
    whatever the search path: the schema's name there (the first occurrence, which is always
    that one) is the one thing that legitimately differs. A body that names a schema differs
    still."""
    marker = {"indexes": " ON ", "triggers": " ON ", "functions": "FUNCTION "}[kind]
    return definition.replace(f"{marker}{schema}.", f"{marker}<schema>.", 1)


def snapshot(schema: str) -> dict[str, list[tuple]]:
    params = {
        "schema": schema,
        "prefixes": [f"{prefix}%" for prefix in TABLE_PREFIXES],
        "cache_tables": list(CACHE_TABLES),
    }
    found = {}
    with search_path(schema), connection.cursor() as cursor:
        cursor.execute(OWN_RELATIONS, params)
        params["own"] = [oid for (oid,) in cursor.fetchall()]
        for kind, sql in QUERIES.items():
            cursor.execute(sql, params)
            rows = cursor.fetchall()
            if kind in ("indexes", "triggers", "functions"):
                rows = [(*row[:-1], unqualified(schema, kind, row[-1])) for row in rows]
            found[kind] = sorted(rows)
    return found


def migrated_schema() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_schema()")
        return cursor.fetchone()[0]


def models_with_references() -> list:
    """The project's models and, transitively, the models they reference (users, content
    types, ...), so that every foreign key has its table."""
    found: list = []
    todo = [model for label in PROJECT_APPS for model in apps.get_app_config(label).get_models()]
    while todo:
        model = todo.pop(0)
        if model in found or model._meta.proxy or not model._meta.managed:
            continue
        found.append(model)
        for field in (*model._meta.fields, *model._meta.many_to_many):
            if field.related_model is not None:
                todo.append(field.related_model)
    return found


def snapshot_from_models() -> dict[str, list[tuple]]:
    """The schema today's code describes, built in a schema of its own without migrations:
    the models' tables, the cache table, and counts.py's SQL. Rolled back afterwards."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {MODELS_SCHEMA}")
        with search_path(MODELS_SCHEMA):
            # Foreign keys are added when the editor closes, so the order of the models does
            # not matter.
            with connection.schema_editor() as editor:
                for model in models_with_references():
                    editor.create_model(model)
            call_command("createcachetable", verbosity=0)
            with connection.cursor() as cursor:
                cursor.execute(counts.INSTALL_SQL)
        found = snapshot(MODELS_SCHEMA)
        transaction.set_rollback(True)
    return found


def differences(actual: dict, expected: dict, actual_name: str, expected_name: str) -> str:
    """The rows of each kind that one side lacks; a definition that both sides have under the
    same name as a diff of the two."""
    lines = []
    for kind in QUERIES:
        only_actual = sorted(set(actual[kind]) - set(expected[kind]))
        only_expected = sorted(set(expected[kind]) - set(actual[kind]))
        paired = {row[:-1]: row for row in only_expected}
        for row in only_actual:
            other = paired.pop(row[:-1], None)
            if other is None:
                lines.append(f"{kind}, only {actual_name}: {row}")
                continue
            diff = difflib.unified_diff(
                str(other[-1]).splitlines(),
                str(row[-1]).splitlines(),
                expected_name,
                actual_name,
                lineterm="",
            )
            lines += [f"{kind} {row[:-1]} differs:", *diff]
        lines += [f"{kind}, only {expected_name}: {row}" for row in paired.values()]
    return "\n".join(lines)


def require_migrated_database() -> None:
    executor = MigrationExecutor(connection)
    leaves = [node for node in executor.loader.graph.leaf_nodes() if node[0] in PROJECT_APPS]
    if not leaves or not set(leaves) <= set(executor.loader.applied_migrations):
        # Without the migrations (pytest --nomigrations) there is nothing to compare: say so
        # rather than pass.
        pytest.fail("the test database was not built by the migrations (no --nomigrations)")


@pytest.mark.postgres_only
def test_a_database_migrated_from_zero_has_the_schema_of_the_models_and_counts():
    require_migrated_database()

    migrated = snapshot(migrated_schema())
    expected = snapshot_from_models()

    # Not two empty lists: the comparison covers the counts' tables, functions and triggers.
    names = {
        kind: {row[1] if kind == "triggers" else row[0] for row in expected[kind]}
        for kind in expected
    }
    assert {"fi_count_cube", "integrations_failedintegration", *CACHE_TABLES} <= names["relations"]
    assert {"fi_count_insert", "fi_count_update", "fi_count_delete"} <= names["triggers"]
    assert {"fi_count_hour", "fi_count_after_update", "fi_count_compact"} <= names["functions"]
    found = differences(migrated, expected, "migrated", "from the models")
    assert not found, found
    assert migrated == expected


def migrate(targets: list[tuple[str, str | None]], callback) -> None:
    # A new executor each time: one reads which migrations are applied when it is made.
    MigrationExecutor(connection, progress_callback=callback).migrate(targets)


@pytest.mark.postgres_only
def test_every_migration_undoes_itself_exactly():
    """Each app back to zero one migration at a time, then forward again: the schema after
    applying a migration is the one seen before it was unapplied, and zero leaves nothing of
    the project behind."""
    require_migrated_database()
    schema = migrated_schema()
    graph = MigrationExecutor(connection).loader.graph
    # One app at a time, so that forward runs exactly the reverse order of backward.
    order = ["integrations", "accounts"]
    leaves = {app: graph.leaf_nodes(app)[0] for app in order}
    applied = {node for node in graph.nodes if node[0] in order}
    before_unapplying: dict[frozenset, dict] = {}
    mismatches: list[str] = []
    steps: list[str] = []

    def backwards(action, migration=None, fake=False):
        node = (migration.app_label, migration.name) if migration else None
        if action == "unapply_start":
            before_unapplying[frozenset(applied)] = snapshot(schema)
        elif action == "unapply_success":
            applied.discard(node)

    def forwards(action, migration=None, fake=False):
        if action != "apply_success":
            return
        node = (migration.app_label, migration.name)
        applied.add(node)
        steps.append(f"{node[0]}.{node[1]}")
        seen = before_unapplying.get(frozenset(applied))
        assert seen is not None, f"no state recorded going back for {steps[-1]}"
        found = differences(snapshot(schema), seen, "forward", "before unapplying")
        if found:
            mismatches.append(f"after applying {steps[-1]}:\n{found}")

    with transaction.atomic():
        for app in order:
            migrate([(app, None)], backwards)
        at_zero = snapshot(schema)
        for app in reversed(order):
            migrate([leaves[app]], forwards)
        transaction.set_rollback(True)

    # Undoing accounts' 0002 keeps the cache table (its reverse is a noop), so that table does
    # not count as left behind.
    leftovers = {
        kind: [row for row in rows if row[0] not in CACHE_TABLES] for kind, rows in at_zero.items()
    }
    assert leftovers == {kind: [] for kind in QUERIES}, "left behind at zero"
    assert len(steps) == len(before_unapplying) > len(order)
    assert not mismatches, "\n".join(mismatches)


def test_no_model_change_lacks_a_migration():
    out = io.StringIO()
    try:
        call_command("makemigrations", check=True, dry_run=True, stdout=out, stderr=out)
    except SystemExit:
        pytest.fail(f"a model change has no migration:\n{out.getvalue()}")


@pytest.mark.postgres_only
def test_roles_keep_everybody_s_access_on_upgrade():
    """Read-only grants become viewers, read-write grants operators, and staff users (who saw
    every channel) operators of every channel; superusers need no grant."""
    require_migrated_database()
    before, after = ("integrations", "0010_signing_secret_rotation"), ("integrations", "0011_roles")
    with transaction.atomic():
        migrate([before], None)
        old = MigrationExecutor(connection).loader.project_state(before).apps
        user_model = old.get_model("auth", "User")
        channel = old.get_model("integrations", "Channel").objects.create(name="c")
        grant_model = old.get_model("integrations", "ChannelGrant")
        users = {
            name: user_model.objects.create(username=name, **flags)
            for name, flags in {
                "staff": {"is_staff": True},
                "root": {"is_staff": True, "is_superuser": True},
                "reader": {},
                "writer": {},
            }.items()
        }
        grant_model.objects.create(user=users["reader"], channel=channel, can_write=False)
        grant_model.objects.create(user=users["writer"], channel=channel, can_write=True)
        with connection.cursor() as cursor:  # as if committed before the upgrade
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")

        migrate([after], None)
        new = MigrationExecutor(connection).loader.project_state(after).apps
        grants = set(
            new.get_model("integrations", "ChannelGrant").objects.values_list(
                "user__username", "channel_id", "role"
            )
        )
        transaction.set_rollback(True)

    assert grants == {
        ("reader", channel.pk, "viewer"),
        ("writer", channel.pk, "operator"),
        ("staff", None, "operator"),
    }
