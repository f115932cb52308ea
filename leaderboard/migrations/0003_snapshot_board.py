from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("leaderboard", "0002_export_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="leaderboardsnapshot",
            name="board",
            field=models.CharField(
                choices=[("public", "Public"), ("simulated", "Simulated voters (staff only)")],
                db_index=True, default="public", max_length=16,
            ),
        ),
    ]
