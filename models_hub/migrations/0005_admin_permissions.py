"""Custom permissions for the admin actions that need more than changing a row."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('models_hub', '0004_modality'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='modelentry',
            options={'ordering': ['display_name'], 'permissions': [('publish_preview', 'Can publish a preview model under its real name'), ('test_modelentry', 'Can test a model entry against its server')], 'verbose_name': 'model entry', 'verbose_name_plural': 'model entries'},
        ),
    ]
