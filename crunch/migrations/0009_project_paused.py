"""A project can be paused: it hands out no dataset until it is resumed."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("crunch", "0008_hashed_tokens")]

    operations = [
        migrations.AddField(
            model_name="project",
            name="paused",
            field=models.BooleanField(
                default=False,
                help_text=(
                    "Hands out no dataset: running ones finish, pending ones wait for resume."
                ),
            ),
        ),
    ]
