"""Counts kept by triggers for exact list counts at scale (PostgreSQL only; see counts.py)."""

from django.db import migrations

from integrations.counts import INSTALL_SQL, UNINSTALL_SQL


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INSTALL_SQL)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(UNINSTALL_SQL)


class Migration(migrations.Migration):
    dependencies = [("integrations", "0002_list_indexes_and_exhausted")]

    operations = [migrations.RunPython(install, uninstall)]
