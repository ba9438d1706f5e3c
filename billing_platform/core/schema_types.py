"""Types shared by the API schemas: the base `Schema` and input types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from ninja import Schema as NinjaSchema
from pydantic import AfterValidator, ModelWrapValidatorHandler, ValidationInfo, model_validator


def _to_utc(value: datetime) -> datetime:
    """Store every time as UTC; naive times are taken as UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("the time is out of range") from exc


UtcDateTime = Annotated[datetime, AfterValidator(_to_utc)]


class Schema(NinjaSchema):
    """Ninja's `Schema`, validating a plain dict directly.

    Ninja wraps every value it validates in a `DjangoGetter` (attribute access on model objects,
    `resolve_*` methods, managers and querysets turned into lists). The API's inputs are parsed
    JSON and its presenters return plain data, so a dict without resolvers to run goes to
    pydantic as it is: the same result, without a Python call per field. Anything else (a model
    object, a schema with resolvers) takes Ninja's way.
    """

    @model_validator(mode="wrap")
    @classmethod
    def _run_root_validator(
        cls, values: Any, handler: ModelWrapValidatorHandler[Any], info: ValidationInfo
    ) -> Any:
        if type(values) is dict and not cls._ninja_resolvers:
            return handler(values)
        return super()._run_root_validator(values, handler, info)  # type: ignore[operator]
