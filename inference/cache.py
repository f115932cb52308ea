"""A per-process cache of loaded models: each loaded once, least recently used out past a memory budget."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Slot(Generic[T]):
    value: T
    nbytes: int


class ModelCache(Generic[T]):
    """Loaded models by key, within `budget_bytes`, least recently used evicted first.

    Thread-safe: one lock guards the bookkeeping and is never held while loading; a lock per key makes threads
    that ask for the same model at once load it once, while other models load in parallel. The model just loaded
    always stays, even alone over budget (it is about to be used). Eviction only drops the cache's reference: a
    generation still holding a model keeps it alive until it finishes.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._lock = threading.Lock()
        self._slots: OrderedDict[Hashable, _Slot[T]] = OrderedDict()
        self._key_locks: dict[Hashable, threading.Lock] = {}

    def get(
        self, key: Hashable, load: Callable[[], T], *, size_of: Callable[[T], int], size_hint: int = 0
    ) -> T:
        """The cached value for `key`, calling `load()` once if absent. `size_hint` (bytes, an estimate made
        before loading) lets older models go first, so the new one is not loaded on top of all of them."""
        with self._lock:
            hit = self._hit(key)
            if hit is not None:
                return hit.value
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                hit = self._hit(key)
                if hit is not None:
                    return hit.value
                self._evict_for(size_hint, keep=key)
            value = load()
            with self._lock:
                self._slots[key] = _Slot(value, size_of(value))
                self._evict_for(0, keep=key)
            return value

    def _hit(self, key: Hashable) -> _Slot[T] | None:
        slot = self._slots.get(key)
        if slot is not None:
            self._slots.move_to_end(key)
        return slot

    def _evict_for(self, incoming: int, *, keep: Hashable) -> None:
        for key in list(self._slots):
            if self._total() + incoming <= self.budget_bytes:
                return
            if key != keep:
                del self._slots[key]

    def _total(self) -> int:
        return sum(slot.nbytes for slot in self._slots.values())

    def keys(self) -> list[Hashable]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._slots)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return self._total()

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()
