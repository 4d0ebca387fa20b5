"""Fields of a worker's calls: stages and states by number or name, datasets by id or
slug, failure reasons, and the labels shown beside them (crunch.api.run_serializers)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crunch.choices import FailReason, Stage, State
from crunch.constants import INT64
from crunch.services.statuses import Failure


@extend_schema_field(OpenApiTypes.INT)
class ChoiceByNumberOrName(serializers.Field[int, Any, int, Any]):
    """Accept a stage or state as its number (1-3, as django-crunch 0.1 sends) or its name."""

    def __init__(self, choices: type[Stage] | type[State], **kwargs: Any) -> None:
        self.choice_enum = choices
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        text = str(data).strip()
        for choice in self.choice_enum:
            if text == str(choice.value) or text.lower() == choice.label.lower():
                return int(choice.value)
        names = ", ".join(f"{c.value} ({c.label})" for c in self.choice_enum)
        raise serializers.ValidationError(f"{data!r} is not one of {names}.")

    def to_representation(self, value: int) -> int:
        return int(value)


@extend_schema_field(OpenApiTypes.OBJECT)
class StatusObject(serializers.Field[dict[str, Any], Any, dict[str, Any], Any]):
    """One status of a batch's object form, checked only for being a JSON object: its keys
    are validated by the status serializer, each status on its own (a ``DictField``
    would run every key through a field first, a tenth of a batch's time)."""

    default_error_messages = {
        "not_a_dict": 'Expected a dictionary of items but got type "{input_type}".'
    }

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_a_dict", input_type=type(data).__name__)
        return data

    def to_representation(self, value: dict[str, Any]) -> dict[str, Any]:
        return value


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class DatasetByIdOrSlug(serializers.Field[Any, Any, int, Any]):
    """A dataset's id (an int) or slug (a str), checked for form only.

    The status service looks the row up itself, in the query that locks it.
    """

    def to_internal_value(self, data: Any) -> int | str:
        text = str(data)
        if "\x00" in text:
            raise serializers.ValidationError("A dataset's id or slug holds no NUL character.")
        # ASCII digits only: '١' and '²' pass str.isdigit() but are no id.  # noqa: RUF003
        if text.isascii() and text.isdigit():
            if int(text) > INT64[1]:
                raise serializers.ValidationError(no_dataset(text))
            return int(text)
        if len(text) > 1023:
            raise serializers.ValidationError(no_dataset(text[:40] + "..."))
        return text

    def to_representation(self, value: Any) -> int:
        return int(value.pk)


@extend_schema_field({"type": "string", "enum": [*FailReason.values, ""]})
class ReasonField(serializers.CharField):
    """A failure reason (crunch.choices.FailReason), refused in one line naming the choices."""

    def to_internal_value(self, data: Any) -> str:
        text = super().to_internal_value(data)
        if text and text not in FailReason.values:
            raise serializers.ValidationError(
                f"{text[:40]!r} is not a failure reason; use one of {', '.join(FailReason.values)}."
            )
        return text


def reason_field(**kwargs: Any) -> ReasonField:
    return ReasonField(required=False, allow_blank=True, max_length=16, **kwargs)


def failure_of(data: dict[str, Any]) -> Failure | None:
    """The failure a validated status body reports; None when it names nothing (unknown)."""
    if not any(data.get(name) for name in ("reason", "reason_detail", "memory", "seconds")):
        return None
    return Failure(
        reason=data.get("reason") or FailReason.UNKNOWN, detail=data.get("reason_detail") or "",
        memory=data.get("memory"), seconds=data.get("seconds"),
    )  # fmt: skip


class LabelOf(serializers.CharField):
    """A stage's or state's name, read from its number (``get_stage_display`` as a source
    would have DRF inspect the method's signature on every status it shows)."""

    def __init__(self, choices: type[Stage] | type[State], **kwargs: Any) -> None:
        self.choice_enum = choices
        super().__init__(read_only=True, **kwargs)

    def to_representation(self, value: Any) -> str:
        return str(self.choice_enum(value).label)


def no_dataset(text: str) -> str:
    return f"No dataset has the id or slug {text!r}."
