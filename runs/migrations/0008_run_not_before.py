from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0007_run_after_policies"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="not_before",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
