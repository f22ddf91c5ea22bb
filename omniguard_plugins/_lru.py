"""One small LRU for every cache in the package (results, decoded media, tower outputs, prefix
KV, encoded parts, decode buckets), so eviction and accounting are written once.

Bounded by item count, by a size in bytes (``sizeof``), or both. Thread-safe when made with
``lock=True``; the batch worker's caches are touched by one thread and skip the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, TypeVar

__all__ = ["LRU"]

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    def __init__(self, max_items: int | None = None, *, max_bytes: int | None = None,
                 sizeof: Callable[[V], int] | None = None, lock: bool = False) -> None:
        if max_bytes is not None and sizeof is None:
            raise ValueError("an LRU bounded in bytes needs sizeof")
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._sizeof = sizeof
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock: AbstractContextManager[object] = threading.Lock() if lock else nullcontext()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return found

    def put(self, key: K, value: V) -> None:
        """Insert or refresh ``key``; a value larger than ``max_bytes`` on its own is not kept."""
        size = self._sizeof(value) if self._sizeof else 0
        if self.max_bytes is not None and size > self.max_bytes or self.max_items == 0:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None and self._sizeof:
                self.bytes -= self._sizeof(old)
            self._items[key] = value
            self.bytes += size
            while (self.max_items is not None and len(self._items) > self.max_items) or (
                self.max_bytes is not None and self.bytes > self.max_bytes
            ):
                _, dropped = self._items.popitem(last=False)
                if self._sizeof:
                    self.bytes -= self._sizeof(dropped)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.bytes = 0
