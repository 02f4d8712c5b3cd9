"""Roles instead of the staff flag and read-only grants.

Upgrade mapping, so that nobody loses access: a read-write grant becomes `operator`, a
read-only grant `viewer`, and every staff user who is not a superuser gets the global role
`operator` (on every channel), which is what the staff flag gave. Going back maps `viewer` to a
read-only grant and every other role to a read-write one; global roles are dropped.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def grants_to_roles(apps, schema_editor):
    ChannelGrant = apps.get_model("integrations", "ChannelGrant")
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    db = schema_editor.connection.alias
    ChannelGrant.objects.using(db).filter(can_write=False).update(role="viewer")
    ChannelGrant.objects.using(db).filter(can_write=True).update(role="operator")
    staff = User.objects.using(db).filter(is_staff=True, is_superuser=False)
    ChannelGrant.objects.using(db).bulk_create(
        [
            ChannelGrant(user_id=user_id, channel=None, role="operator")
            for user_id in staff.values_list("pk", flat=True)
        ]
    )
    _check_constraints_now(schema_editor)


def _check_constraints_now(schema_editor):
    # PostgreSQL defers the foreign keys' checks of the rows written here to the commit, and
    # refuses to alter a table with checks pending: the next operation alters it.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def roles_to_grants(apps, schema_editor):
    ChannelGrant = apps.get_model("integrations", "ChannelGrant")
    db = schema_editor.connection.alias
    ChannelGrant.objects.using(db).filter(channel__isnull=True).delete()
    ChannelGrant.objects.using(db).filter(role="viewer").update(can_write=False)
    ChannelGrant.objects.using(db).exclude(role="viewer").update(can_write=True)
    _check_constraints_now(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0010_signing_secret_rotation"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="channelgrant",
            name="role",
            field=models.CharField(
                choices=[
                    ("viewer", "viewer: reads"),
                    ("operator", "operator: reads, reports, edits records, runs operator actions"),
                    ("admin", "admin: also the channel's settings and its grants"),
                ],
                default="operator",
                max_length=16,
            ),
        ),
        migrations.AlterField(
            model_name="channelgrant",
            name="channel",
            field=models.ForeignKey(
                blank=True,
                help_text="Leave empty for a role on every channel.",
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="grants",
                to="integrations.channel",
            ),
        ),
        migrations.RunPython(grants_to_roles, roles_to_grants),
        migrations.RemoveField(model_name="channelgrant", name="can_write"),
        migrations.AddConstraint(
            model_name="channelgrant",
            constraint=models.UniqueConstraint(
                condition=models.Q(("channel__isnull", True)),
                fields=("user",),
                name="channel_grant_one_global_role",
            ),
        ),
    ]
