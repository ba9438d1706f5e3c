"""API-key format and keyed hashing.

A key is `bk_` (tenant) or `bpk_` (platform) + an 8-character lookup id + `_` + 40 random base62
characters. The lookup id finds the row (or the cache entry); the stored `key_hash` is
HMAC-SHA256 of the whole key under a versioned server secret, compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

BASE62 = string.ascii_letters + string.digits
LOOKUP_LENGTH = 8
SECRET_LENGTH = 40
TENANT_PREFIX = "bk"
PLATFORM_PREFIX = "bpk"


@dataclass(frozen=True)
class ParsedKey:
    kind: str  # TENANT_PREFIX or PLATFORM_PREFIX
    lookup_id: str
    raw: str


@dataclass(frozen=True)
class NewKey:
    raw: str
    lookup_id: str
    key_hash: str
    hash_version: int


def _random(length: int) -> str:
    return "".join(secrets.choice(BASE62) for _ in range(length))


@cache
def hash_secrets() -> dict[int, bytes]:
    """Parse API_KEY_HASH_SECRETS ("2:new,1:old") into {version: secret}."""
    raw = settings.API_KEY_HASH_SECRETS
    parsed: dict[int, bytes] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        version, sep, secret = part.partition(":")
        if not sep or not version.isdigit() or len(secret) < 32:
            raise ImproperlyConfigured(
                "API_KEY_HASH_SECRETS must be 'version:secret' pairs with secrets of 32+ characters"
            )
        parsed[int(version)] = secret.encode()
    if not parsed:
        raise ImproperlyConfigured("API_KEY_HASH_SECRETS is not set (make run writes one).")
    return parsed


def current_version() -> int:
    return max(hash_secrets())


def hash_key(raw: str, version: int) -> str:
    secret = hash_secrets().get(version)
    if secret is None:
        # A key hashed with a retired secret can no longer be verified.
        return ""
    return hmac.new(secret, raw.encode(), hashlib.sha256).hexdigest()


def verify_key(raw: str, key_hash: str, version: int) -> bool:
    expected = hash_key(raw, version)
    return bool(expected) and hmac.compare_digest(expected, key_hash)


def generate(kind: str) -> NewKey:
    lookup_id = _random(LOOKUP_LENGTH)
    raw = f"{kind}_{lookup_id}_{_random(SECRET_LENGTH)}"
    version = current_version()
    return NewKey(raw=raw, lookup_id=lookup_id, key_hash=hash_key(raw, version),
                  hash_version=version)


def parse(raw: str) -> ParsedKey | None:
    """Split a presented key into kind and lookup id; None when it is not of our format."""
    kind, sep, rest = raw.partition("_")
    if not sep or kind not in (TENANT_PREFIX, PLATFORM_PREFIX):
        return None
    lookup_id, sep, secret = rest.partition("_")
    if (
        not sep
        or len(lookup_id) != LOOKUP_LENGTH
        or len(secret) < 32
        or len(secret) > 128
        or not all(c in BASE62 for c in lookup_id)
        or not all(c in BASE62 for c in secret)
    ):
        return None
    return ParsedKey(kind=kind, lookup_id=lookup_id, raw=raw)
