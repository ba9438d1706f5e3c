"""The API's base `Schema`: dicts go to pydantic directly, everything else Ninja's way."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import ninja
import pytest
from pydantic import ValidationError

from billing_platform.core.schema_types import Schema, UtcDateTime


class Item(Schema):
    name: str
    amount: int
    tags: list[str] = []
    at: UtcDateTime | None = None


class NinjaItem(ninja.Schema):
    name: str
    amount: int
    tags: list[str] = []
    at: UtcDateTime | None = None


class Labelled(Schema):
    name: str
    label: str

    @staticmethod
    def resolve_label(obj: Any) -> str:
        name = obj["name"] if isinstance(obj, dict) else obj.name
        return f"<{name}>"


@pytest.mark.parametrize(
    "value",
    [
        {"name": "a", "amount": "3"},
        {"name": "b", "amount": 1, "tags": ["x"], "at": "2026-01-02T03:04:05+02:00"},
        {"name": "c", "amount": 2, "unknown": "ignored"},
    ],
)
def test_a_dict_validates_as_ninja_schema_does(value: dict[str, Any]) -> None:
    assert Item.model_validate(value).model_dump() == NinjaItem.model_validate(value).model_dump()


@pytest.mark.parametrize("value", [{"name": "a"}, {"name": "a", "amount": "many"}, {"amount": 1}])
def test_a_bad_dict_fails_as_ninja_schema_does(value: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as ours:
        Item.model_validate(value)
    with pytest.raises(ValidationError) as theirs:
        NinjaItem.model_validate(value)
    assert [(e["loc"], e["type"]) for e in ours.value.errors()] == [
        (e["loc"], e["type"]) for e in theirs.value.errors()
    ]


def test_an_object_is_read_by_attribute() -> None:
    item = Item.model_validate(SimpleNamespace(name="obj", amount=4, tags=["t"], at=None))
    assert (item.name, item.amount, item.tags) == ("obj", 4, ["t"])


def test_a_callable_attribute_of_an_object_is_called_as_ninja_does() -> None:
    item = Item.model_validate(SimpleNamespace(name="obj", amount=lambda: 7))
    assert item.amount == 7


def test_resolvers_run_for_a_dict_and_for_an_object() -> None:
    assert Labelled.model_validate({"name": "d", "label": "ignored"}).label == "<d>"
    assert Labelled.model_validate(SimpleNamespace(name="o")).label == "<o>"


def test_every_api_schema_takes_the_fast_base() -> None:
    from billing_platform.api import api

    schema = api.get_openapi_schema()
    assert schema["components"]["schemas"]
    offenders = []
    for subclass in _subclasses(ninja.Schema):
        module = subclass.__module__
        if module.startswith(("billable.", "tenants.", "billing_platform.")) and not issubclass(
            subclass, Schema
        ):
            offenders.append(f"{module}.{subclass.__qualname__}")
    assert offenders == []


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found
