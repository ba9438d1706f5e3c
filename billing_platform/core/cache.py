"""Django's Redis cache backend, with one `redis.Redis` client per connection pool.

Django's client builds a new `redis.Redis` for every cache call; each one sets up its table of
response callbacks (hundreds of entries), which cost more CPU per API request than the key
lookup itself. A client is thread-safe and only wraps its pool, so one per pool is reused.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient


class ReusedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        base: Any = self  # the parent's attributes are private (not in the type stubs)
        index = base._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            if index not in base._pools:
                base._pools[index] = base._pool_class.from_url(
                    base._servers[index], **base._pool_options
                )
            client = base._client(connection_pool=base._pools[index])
            self._clients[index] = client
        return client


class SharedRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class: Any = ReusedClientRedisCacheClient
