"""Custom permissions for the admin actions that need more than changing a row."""

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('trust', '0002_pow_expiry'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='voterrisk',
            options={'ordering': ['-score'], 'permissions': [('review_voterrisk', 'Can clear or confirm flagged voters')], 'verbose_name': 'voter risk'},
        ),
    ]
