"""A small least-recently-used cache: the explorer keeps its per-trial features, maps and pictures in these."""

from __future__ import annotations

import threading
from collections import OrderedDict


class LRUCache(OrderedDict):
    """A dict that keeps at most `capacity` entries, dropping the one used longest ago.

    `put` and `fetch` are safe from several threads (the app runs a β change beside another job).
    """

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self._lock = threading.Lock()

    def put(self, key, value):
        with self._lock:
            self[key] = value
            self.move_to_end(key)
            while len(self) > self.capacity:
                self.popitem(last=False)
        return value

    def fetch(self, key):
        with self._lock:
            if key in self:
                self.move_to_end(key)
                return self[key]
        return None
