from django.db import migrations


class Migration(migrations.Migration):
    """What the app took is counted from its answers, not from the claims: a claim's attempts
    still in flight, or refused in another batch, made the first lesson too high."""

    dependencies = [
        ("integrations", "0021_learned_rate"),
    ]

    operations = [
        migrations.RenameField("channeldispatch", "sent_since", "answered_since"),
        migrations.RenameField("channeldispatch", "sent_count", "answered_count"),
        migrations.RenameField("channeldispatch", "sent_rate", "answered_rate"),
    ]
