"""Takes over the tables the arena app created (arena 0002): state only, no change to the database."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('arena', '0003_leaderboard_models_move'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='LeaderboardSnapshot',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('votes_used', models.PositiveIntegerField()),
                        ('vote_hash', models.CharField(max_length=64)),
                        ('seconds', models.FloatField(help_text='How long the fit took.')),
                        ('payload', models.JSONField()),
                    ],
                    options={
                        'db_table': 'arena_leaderboardsnapshot',
                        'ordering': ['-id'],
                        'get_latest_by': 'id',
                    },
                ),
                migrations.CreateModel(
                    name='ImportedBattle',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('key', models.CharField(max_length=64, unique=True)),
                        ('source', models.CharField(blank=True, max_length=255)),
                        ('line', models.PositiveIntegerField()),
                        ('battle', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='imported', to='arena.battle')),
                    ],
                    options={
                        'db_table': 'arena_importedbattle',
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
