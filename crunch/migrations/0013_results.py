"""Results that workflows report: a per-project schema of typed keys, one typed row per
dataset and key with a partial index per value column, and a version stamp per project."""

from __future__ import annotations

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('crunch', '0012_notifications'),
    ]

    operations = [
        migrations.CreateModel(
            name='ResultsVersion',
            fields=[
                ('project', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='results_version', serialize=False, to='crunch.project')),
                ('version', models.BigIntegerField(default=0)),
                ('changed', models.DateTimeField(default=django.utils.timezone.now)),
            ],
        ),
        migrations.CreateModel(
            name='ResultKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=64)),
                ('kind', models.CharField(choices=[('int', 'Integer'), ('float', 'Float'), ('bool', 'Boolean'), ('char', 'Text'), ('date', 'Date'), ('datetime', 'Date and time'), ('latlong', 'Latitude/longitude')], max_length=16)),
                ('created', models.DateTimeField(auto_now_add=True)),
                ('project', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='result_keys', to='crunch.project')),
            ],
            options={
                'ordering': ['project', 'name'],
            },
        ),
        migrations.CreateModel(
            name='Result',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('integer', models.BigIntegerField(blank=True, null=True)),
                ('number', models.FloatField(blank=True, null=True)),
                ('flag', models.BooleanField(blank=True, null=True)),
                ('text', models.CharField(blank=True, max_length=1000, null=True)),
                ('date', models.DateField(blank=True, null=True)),
                ('moment', models.DateTimeField(blank=True, null=True)),
                ('lat', models.FloatField(blank=True, null=True)),
                ('lon', models.FloatField(blank=True, null=True)),
                ('updated', models.DateTimeField(auto_now=True)),
                ('dataset', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='results', to='crunch.dataset')),
                ('key', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='values', to='crunch.resultkey')),
            ],
            options={
                'ordering': ['dataset', 'key'],
            },
        ),
        migrations.AddConstraint(
            model_name='resultkey',
            constraint=models.UniqueConstraint(fields=('project', 'name'), name='crunch_result_key'),
        ),
        migrations.AddIndex(
            model_name='result',
            index=models.Index(condition=models.Q(('integer__isnull', False)), fields=['key', 'integer', 'dataset'], name='crunch_result_integer'),
        ),
        migrations.AddIndex(
            model_name='result',
            index=models.Index(condition=models.Q(('number__isnull', False)), fields=['key', 'number', 'dataset'], name='crunch_result_number'),
        ),
        migrations.AddIndex(
            model_name='result',
            index=models.Index(condition=models.Q(('flag__isnull', False)), fields=['key', 'flag', 'dataset'], name='crunch_result_flag'),
        ),
        migrations.AddIndex(
            model_name='result',
            index=models.Index(condition=models.Q(('text__isnull', False)), fields=['key', 'text', 'dataset'], name='crunch_result_text'),
        ),
        migrations.AddIndex(
            model_name='result',
            index=models.Index(condition=models.Q(('date__isnull', False)), fields=['key', 'date', 'dataset'], name='crunch_result_date'),
        ),
        migrations.AddIndex(
            model_name='result',
            index=models.Index(condition=models.Q(('moment__isnull', False)), fields=['key', 'moment', 'dataset'], name='crunch_result_moment'),
        ),
        migrations.AddConstraint(
            model_name='result',
            constraint=models.UniqueConstraint(fields=('dataset', 'key'), name='crunch_result_dataset_key'),
        ),
    ]
