from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("speech", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="speechclip",
            name="delivered_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
