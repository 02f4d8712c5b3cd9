"""Cheaper count triggers: the hour function is inlined by the planner, and the update trigger
appends deltas only for rows whose counted values changed (a worker's lease update appends
nothing)."""

from django.db import migrations

from integrations.counts import HOUR_FUNCTION_SQL, UPDATE_FUNCTION_SQL


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(HOUR_FUNCTION_SQL)
        schema_editor.execute(UPDATE_FUNCTION_SQL)


class Migration(migrations.Migration):
    dependencies = [("integrations", "0006_channel_grants")]

    # Backwards needs nothing: the counts the function keeps are the same either way.
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
