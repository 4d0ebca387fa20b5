"""What every model shares: slugs made from names, constraints, the Node fields."""

from __future__ import annotations

import django
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from crunch.markup import details_length


def unique_slug(model: type[models.Model], base: str, *, prefix: str = "") -> str:
    """Return ``prefix + slugify(base)``, numbered until no row of ``model`` has it."""
    stem = prefix + (slugify(base) or "unnamed")
    slug, n = stem, 1
    while model._default_manager.filter(slug=slug).exists():
        n += 1
        slug = f"{stem}-{n}"
    return slug


def check_constraint(*, name: str, condition: Q) -> models.CheckConstraint:
    """Build a CheckConstraint on Django 4.2 (``check=``) and 5.1+ (``condition=``)."""
    if django.VERSION >= (5, 1):
        return models.CheckConstraint(name=name, condition=condition)
    # django-stubs describes Django 5.1+, which renamed ``check`` to ``condition``.
    return models.CheckConstraint(name=name, check=condition)  # type: ignore[call-arg]  # pragma: no cover


class Node(models.Model):
    """What projects, datasets and items share: a name, a slug and descriptions."""

    name = models.CharField(max_length=1023)
    slug = models.SlugField(max_length=1023, unique=True, allow_unicode=False)
    description = models.CharField(max_length=1023, blank=True, default="")
    details = models.TextField(
        blank=True, default="", help_text="Markdown.", validators=[details_length]
    )
    created = models.DateTimeField(default=timezone.now, editable=False)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name
