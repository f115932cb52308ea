# A proof of work lasts a while (settings.ARENA_POW_TTL): each proof row gets the time it stops counting.
# Rows proved before this migration keep none, so they count no more and those sessions solve once again.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("trust", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="sessionproof",
            name="expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
