"""The service's bounded in-memory cache (vault/custody/cache.py): time- and size-bounded, and a
shred's ``forget_client`` leaves nothing of that client behind."""

from __future__ import annotations

import pytest

from vault.custody.cache import BoundedCache


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_the_ttl():
    t = Ticks()
    cache = BoundedCache(ttl_seconds=60, monotonic=t)
    cache.put(("c1", 1), b"s1")
    t.now += 59.9
    assert cache.get(("c1", 1)) == b"s1"
    t.now += 0.1
    assert cache.get(("c1", 1)) is None and len(cache) == 0


def test_size_is_bounded_oldest_first():
    cache = BoundedCache(ttl_seconds=60, max_entries=3, monotonic=Ticks())
    for i in range(5):
        cache.put((f"c{i}", 1), i)
    assert len(cache) == 3 and cache.get(("c0", 1)) is None and cache.get(("c4", 1)) == 4


def test_forget_client_drops_every_entry_of_that_client_only():
    cache = BoundedCache(monotonic=Ticks())
    cache.put(("c1", 1), b"a")
    cache.put(("c1", 2), b"b")
    cache.put(("c2", 1), b"c")
    assert cache.forget_client("c1") == 2
    assert cache.get(("c1", 1)) is None and cache.get(("c1", 2)) is None
    assert cache.get(("c2", 1)) == b"c"


def test_zero_ttl_caches_nothing():
    cache = BoundedCache(ttl_seconds=0, monotonic=Ticks())
    cache.put(("c1", 1), b"a")
    assert cache.get(("c1", 1)) is None


def test_negative_bounds_are_refused():
    with pytest.raises(ValueError):
        BoundedCache(ttl_seconds=-1)
