"""A modality on each model entry (text, speech), a voice for speech models, and the espeak-ng provider."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("models_hub", "0003_lineage"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelentry",
            name="modality",
            field=models.CharField(
                choices=[("text", "Text"), ("speech", "Speech")], db_index=True, default="text", max_length=10
            ),
        ),
        migrations.AddField(
            model_name="modelentry",
            name="voice",
            field=models.CharField(
                blank=True,
                help_text="Speech: the voice, e.g. en-us+m3 for espeak-ng or alloy for an OpenAI-compatible endpoint.",
                max_length=100,
            ),
        ),
        migrations.AlterField(
            model_name="modelentry",
            name="provider",
            field=models.CharField(
                choices=[
                    ("transformers", "Local transformers checkpoint"),
                    ("openai", "OpenAI-compatible endpoint"),
                    ("espeak", "Local espeak-ng voice"),
                ],
                default="transformers",
                max_length=20,
            ),
        ),
        migrations.RemoveConstraint(model_name="modelentry", name="model_entry_known_provider"),
        migrations.AddConstraint(
            model_name="modelentry",
            constraint=models.CheckConstraint(
                condition=models.Q(("provider__in", ["transformers", "openai", "espeak"])),
                name="model_entry_known_provider",
            ),
        ),
        migrations.AddConstraint(
            model_name="modelentry",
            constraint=models.CheckConstraint(
                condition=models.Q(("modality__in", ["text", "speech"])), name="model_entry_known_modality"
            ),
        ),
    ]
