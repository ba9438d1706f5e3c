"""Ninja's renderer: the API's answers as JSON, written by orjson.

The values are those of Ninja's default renderer (the standard library's `json` with
`NinjaJSONEncoder`): orjson hands every type it would write differently to the encoders that
renderer used (datetimes, dates and times: milliseconds and `Z` as Django writes them; decimals
as strings). The text differs only in form: compact (no space after `,` and `:`), and characters
beyond ASCII written as UTF-8 instead of `\\u` escapes. A value orjson refuses (an integer beyond
64 bits, nesting deeper than 255 levels) is written by the default renderer instead.
"""

from __future__ import annotations

import datetime
import decimal
from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS
# The types an answer holds most (timestamps, amounts) go straight to Django's encoder, which
# Ninja's reaches for them only after its own checks.
_DJANGO_TYPES = (datetime.datetime, datetime.date, datetime.time, decimal.Decimal)
_django_default = DjangoJSONEncoder().default
_ninja_default = NinjaJSONEncoder().default


def _default(value: Any) -> Any:
    if isinstance(value, _DJANGO_TYPES):
        return _django_default(value)
    return _ninja_default(value)


class OrjsonRenderer(JSONRenderer):
    """Write answers with orjson; what it defers goes to Django's and Ninja's encoders."""

    def render(self, request: HttpRequest, data: Any, *, response_status: int) -> Any:
        try:
            return orjson.dumps(data, default=_default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(request, data, response_status=response_status)
