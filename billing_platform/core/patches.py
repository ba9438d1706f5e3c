"""Partial updates: copy the fields a change provides onto a row and save those fields.

Services that change a row (`product_update`, `tenant_update`, `endpoint_update`, ...) lock it,
build `{field: value}` from their keyword arguments, and call `save_patch`. A field whose value
is the `missing` marker (`UNSET` by default; `None` where the caller means "not given" by it)
is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from django.db import models


class _Unset:
    """The value of a keyword argument the caller did not pass."""

    def __repr__(self) -> str:
        return "UNSET"


# Typed Any so it can default a keyword argument of any type: `name: str = UNSET`.
UNSET: Final[Any] = _Unset()


def save_patch(
    instance: models.Model, changes: Mapping[str, Any], *, missing: Any = UNSET
) -> list[str]:
    """Set each provided field on `instance` and save them in one UPDATE; return their names.

    The model's `auto_now` fields (`updated_at`) are saved too. With nothing to write, the row is
    saved whole, as a plain `save()` would: one UPDATE either way.
    """
    fields = [name for name, value in changes.items() if value is not missing]
    for name in fields:
        setattr(instance, name, changes[name])
    touched = [
        field.name
        for field in instance._meta.concrete_fields
        if getattr(field, "auto_now", False) and field.name not in fields
    ]
    instance.save(update_fields=[*fields, *touched] or None)
    return fields
