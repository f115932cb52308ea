"""Sampling knobs in the registry (battle targets, a new model's boost, pairs never drawn, anonymous exclusion),
retirement, the verdict against the parent, the promotion override, and the permissions to retire and to override."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('models_hub', '0005_admin_permissions'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='modelentry',
            options={'ordering': ['display_name'], 'permissions': [('publish_preview', 'Can publish a preview model under its real name'), ('test_modelentry', 'Can test a model entry against its server'), ('retire_modelentry', 'Can retire a model entry and bring it back'), ('override_promotion', 'Can promote a preview without a verdict that it beats its parent')], 'verbose_name': 'model entry', 'verbose_name_plural': 'model entries'},
        ),
        migrations.AddField(
            model_name='modelentry',
            name='anonymous_excluded',
            field=models.BooleanField(default=False, help_text='Left out of anonymous battles (still chosen by name in named and single battles).'),
        ),
        migrations.AddField(
            model_name='modelentry',
            name='battle_target_share',
            field=models.FloatField(default=0.0, help_text="The share of this model's first draws whose rival is one of its battle targets (0 to 1).", validators=[django.core.validators.MinValueValidator(0.0), django.core.validators.MaxValueValidator(1.0)]),
        ),
        migrations.AddField(
            model_name='modelentry',
            name='battle_targets',
            field=models.ManyToManyField(blank=True, help_text='Named rivals: when this model is drawn first, its rival is one of these in target share of draws.', related_name='targeted_by', to='models_hub.modelentry'),
        ),
        migrations.AddField(
            model_name='modelentry',
            name='boost_factor',
            field=models.FloatField(default=1.0, help_text="A new model's sampling weight is multiplied by this until it has the votes below.", validators=[django.core.validators.MinValueValidator(1.0), django.core.validators.MaxValueValidator(100.0)]),
        ),
        migrations.AddField(
            model_name='modelentry',
            name='boost_until_votes',
            field=models.PositiveIntegerField(default=0, help_text='The boost lasts until the latest leaderboard counts this many votes on the model.'),
        ),
        migrations.AddField(
            model_name='modelentry',
            name='never_meets',
            field=models.ManyToManyField(blank=True, help_text='Models this one is never drawn against in anonymous battles.', to='models_hub.modelentry'),
        ),
        migrations.AddField(
            model_name='modelentry',
            name='parent_verdict',
            field=models.JSONField(blank=True, default=dict, editable=False),
        ),
        migrations.AddField(
            model_name='modelentry',
            name='promotion_override',
            field=models.TextField(blank=True, editable=False),
        ),
        migrations.AddField(
            model_name='modelentry',
            name='retired_at',
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
    ]
