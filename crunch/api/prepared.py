"""Serializers made once and shared, for the hot paths: a status, a batch, a claim.

DRF builds a serializer's fields for each serializer it makes: a ModelSerializer maps every
model field again (about a millisecond for a status, more than the post's queries), and a
plain Serializer deep-copies its declared fields, which runs each one's constructor again.
A shared serializer builds them once. Only DRF's public methods are called on it:
``run_validation`` (what ``is_valid`` runs) and ``to_representation`` (what ``data``
returns). Neither keeps anything on the serializer, so one instance serves every request.

A body the shared serializer refuses, or that is not JSON (a form post), is validated
again by a new serializer made with the request's context, whose ``is_valid`` raises the
errors exactly as before: the shared one only ever answers for bodies DRF accepts.

Only serializers whose fields and checks read no context (no request, no instance) may
be shared: the shared one is made without either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any, Generic, TypeVar

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

S = TypeVar("S", bound=serializers.Serializer[Any])

REFUSED = (ValidationError, DjangoValidationError)


class Shared(Generic[S]):
    """One serializer of ``serializer_class``, made on first use (its fields need the apps)."""

    def __init__(self, serializer_class: type[S]) -> None:
        self.serializer_class = serializer_class

    @cached_property
    def serializer(self) -> S:
        serializer = self.serializer_class()
        serializer.fields  # noqa: B018 - built now, once (as are its checks: the model's
        serializer.validators  # noqa: B018 - unique-together, looked up on first use)
        return serializer

    def validate(self, data: Any, context: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """What ``is_valid`` would accept, as a dict; raises what ``is_valid`` would raise."""
        if type(data) is dict:
            try:
                return dict(self.serializer.run_validation(data))
            except REFUSED:
                pass
        serializer = self.serializer_class(data=data, context=dict(context or {}))
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def validate_many(
        self, data: Any, context: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """What ``is_valid`` of ``many=True`` would accept, item by item; else its errors."""
        if type(data) is list and all(type(item) is dict for item in data):
            try:
                return [dict(self.serializer.run_validation(item)) for item in data]
            except REFUSED:
                pass
        many = self.serializer_class(data=data, many=True, context=dict(context or {}))
        many.is_valid(raise_exception=True)
        return [dict(item) for item in many.validated_data]

    def show(self, instance: Any) -> dict[str, Any]:
        """What ``data`` would hold for ``instance``."""
        return dict(self.serializer.to_representation(instance))

    def show_many(self, instances: Iterable[Any]) -> list[dict[str, Any]]:
        return [self.show(instance) for instance in instances]
