"""`{{ value|detail }}`: one value of an audit entry's detail as the log shows it: text as it
is, anything else (numbers, yes/no, lists, the old and new values of a change) as JSON."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()


@register.filter
def detail(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
