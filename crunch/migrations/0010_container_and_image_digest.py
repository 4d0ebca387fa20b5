"""A project may name a container image for its workflow, kept with each workflow change,
and a status records the digest of the image a run used."""

from __future__ import annotations

import crunch.models.projects
import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('crunch', '0009_project_paused'),
    ]

    operations = [
        migrations.AddField(
            model_name='project',
            name='container',
            field=models.CharField(blank=True, default='', help_text='The image the workflow runs in, e.g. docker://rocker/r-ver:4.4, a path to a .sif, or a Charliecloud image directory or ch-image name. Empty: no container.', max_length=500, validators=[crunch.models.projects.container_image]),
        ),
        migrations.AddField(
            model_name='status',
            name='image_digest',
            field=models.CharField(blank=True, default='', help_text='Digest (sha256:...) of the container image the workflow ran in; empty: none.', max_length=200, validators=[django.core.validators.RegexValidator('^sha256:[0-9a-f]{64}\\Z', "Give the image digest as 'sha256:' and 64 lowercase hexadecimal digits.")]),
        ),
        migrations.AddField(
            model_name='workflowchange',
            name='container',
            field=models.CharField(blank=True, default='', help_text='The container after it.', max_length=500),
        ),
        migrations.AddField(
            model_name='workflowchange',
            name='previous_container',
            field=models.CharField(blank=True, default='', help_text='The container before it.', max_length=500),
        ),
    ]
