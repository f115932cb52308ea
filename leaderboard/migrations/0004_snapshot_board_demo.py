from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("leaderboard", "0003_snapshot_board"),
    ]

    operations = [
        migrations.AlterField(
            model_name="leaderboardsnapshot",
            name="board",
            field=models.CharField(
                choices=[("public", "Public"), ("simulated", "Simulated voters (staff only)"),
                         ("demo", "Demo (sample battles)")],
                db_index=True, default="public", max_length=16,
            ),
        ),
    ]
