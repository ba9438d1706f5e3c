"""Encryption of stored secrets (signing secrets, header values, stored idempotent answers).

MultiFernet over ENCRYPTION_KEYS: the first key encrypts, every key decrypts, so keys rotate by
putting a new one first.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet() -> MultiFernet:
    keys = [k for k in settings.ENCRYPTION_KEYS if k]
    if not keys:
        raise ImproperlyConfigured("ENCRYPTION_KEYS is not set (make run writes one).")
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()


def encrypt_bytes(value: bytes) -> bytes:
    return _fernet().encrypt(value)


def decrypt_bytes(token: bytes) -> bytes:
    return _fernet().decrypt(token)


def encrypt_json(value: Any) -> str:
    return encrypt(json.dumps(value))


def decrypt_json(token: str) -> Any:
    return json.loads(decrypt(token)) if token else {}
