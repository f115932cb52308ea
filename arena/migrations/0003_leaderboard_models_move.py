"""Snapshots and imported-battle marks belong to the leaderboard app now; their tables stay where they are."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('arena', '0002_leaderboard_snapshots'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name='ImportedBattle'),
                migrations.DeleteModel(name='LeaderboardSnapshot'),
            ],
            database_operations=[],
        ),
    ]
