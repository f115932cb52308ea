from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("arena", "0008_vote_battles"),
    ]

    operations = [
        migrations.AddField(
            model_name="vote",
            name="reasons",
            field=models.JSONField(blank=True, null=True),
        ),
    ]
