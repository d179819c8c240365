"""A small least-recently-used cache: the explorer keeps its per-trial features, maps and pictures in these."""

from __future__ import annotations

from collections import OrderedDict


class LRUCache(OrderedDict):
    """A dict that keeps at most `capacity` entries, dropping the one used longest ago."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity

    def put(self, key, value):
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)
        return value

    def fetch(self, key):
        if key in self:
            self.move_to_end(key)
            return self[key]
        return None
