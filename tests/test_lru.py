"""The explorer's LRU cache: capacity and recency."""

from __future__ import annotations

from neurochat.lru import LRUCache


def test_the_entry_used_longest_ago_goes_first():
    cache = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.fetch("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert list(cache) == ["a", "c"] and cache.fetch("b") is None
