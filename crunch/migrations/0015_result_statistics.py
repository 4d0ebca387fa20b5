from django.db import migrations

from crunch.db import migrating


def create(apps, schema_editor):
    migrating.create_result_statistics(schema_editor.connection)


def drop(apps, schema_editor):
    migrating.drop_result_statistics(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("crunch", "0014_fail_reasons"),
    ]

    operations = [migrations.RunPython(create, drop)]
