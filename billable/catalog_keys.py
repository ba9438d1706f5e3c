"""Catalog keys (product keys, offer SKUs, feature names): their form and their one spelling."""

from __future__ import annotations

import re

from billing_platform.core.errors import ValidationFailed

KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
FEATURE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def normalise_key(value: str, *, field: str = "key") -> str:
    text = str(value).strip()
    if not KEY_RE.fullmatch(text):
        raise ValidationFailed(
            f"{field} is 1–64 letters, digits, '_', '-' or '.'.", field=field, msg="invalid key"
        )
    return text.upper()
