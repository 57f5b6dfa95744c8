from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("crons", "0009_cron_policies"),
    ]

    operations = [
        migrations.AddField(
            model_name="cron",
            name="catchup_window",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="cron",
            name="catchup",
            field=models.CharField(
                choices=[("latest", "Latest"), ("all", "All")],
                db_default="latest",
                default="latest",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="cron",
            name="jitter",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
    ]
