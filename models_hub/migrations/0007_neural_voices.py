"""The neural voice providers (Piper, Kokoro) and the languages a voice reads."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("models_hub", "0006_sampling_knobs_retirement"),
    ]

    operations = [
        migrations.AddField(
            model_name="modelentry",
            name="languages",
            field=models.CharField(
                blank=True,
                help_text="Speech: the languages the voice reads, as ISO 639-1 codes (en,fr); blank for any language. "
                "A voice battle draws only voices that read its text's language.",
                max_length=100,
                validators=[
                    django.core.validators.RegexValidator(
                        "^([a-z]{2,3}(,[a-z]{2,3})*)?$",
                        "Give ISO 639-1 language codes separated by commas, e.g. en,fr.",
                    )
                ],
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
                    ("piper", "Local Piper neural voice"),
                    ("kokoro", "Local Kokoro neural voice"),
                ],
                default="transformers",
                max_length=20,
            ),
        ),
        migrations.RemoveConstraint(model_name="modelentry", name="model_entry_known_provider"),
        migrations.AddConstraint(
            model_name="modelentry",
            constraint=models.CheckConstraint(
                condition=models.Q(("provider__in", ["transformers", "openai", "espeak", "piper", "kokoro"])),
                name="model_entry_known_provider",
            ),
        ),
    ]
