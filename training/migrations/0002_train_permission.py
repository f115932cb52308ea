"""Custom permissions for the admin actions that need more than changing a row."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('training', '0001_initial'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='trainingrun',
            options={'ordering': ['-created_at'], 'permissions': [('train_from_votes', 'Can queue a training run from the votes')]},
        ),
    ]
