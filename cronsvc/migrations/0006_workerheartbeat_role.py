from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cronsvc", "0005_assistant_metadata_gin"),
    ]

    operations = [
        migrations.AddField(
            model_name="workerheartbeat",
            name="role",
            field=models.CharField(default="runs", max_length=16),
        ),
    ]
