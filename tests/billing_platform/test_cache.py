"""The shared cache: Redis through one reused client per connection pool."""

from __future__ import annotations

import threading

from django.core.cache import cache, caches

from billing_platform.core.cache import SharedRedisCache


def test_the_cache_is_redis_with_one_client_reused() -> None:
    default = caches["default"]
    assert isinstance(default, SharedRedisCache)
    backend = default._cache
    first = backend.get_client(write=True)
    assert backend.get_client(write=True) is first
    assert backend.get_client() is first  # one server: reads use the same pool


def test_values_round_trip_from_many_threads() -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                cache.set(f"cache-test:{n}:{i}", {"n": n, "i": i}, 30)
                assert cache.get(f"cache-test:{n}:{i}") == {"n": n, "i": i}
            assert cache.add(f"cache-test:{n}:add", 1, 30)
            assert not cache.add(f"cache-test:{n}:add", 2, 30)
            assert cache.incr(f"cache-test:{n}:add") == 2
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    cache.delete_many([f"cache-test:{n}:{i}" for n in range(8) for i in range(50)]
                      + [f"cache-test:{n}:add" for n in range(8)])
