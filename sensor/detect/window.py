"""Bounded sliding windows in packet time, shared by the stateful detectors."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DistinctWindow(Generic[K]):
    """Per key, the distinct items seen in the last ``window`` seconds (bounded keys and items).

    ``add`` returns how many distinct items the key holds now, or 0 when the item was already
    there (so a caller acts once per new item). Keys are evicted least recently used beyond
    ``max_keys``; items beyond ``max_items`` per key are dropped oldest first.
    """

    def __init__(self, window: float, max_keys: int = 10_000, max_items: int = 4096) -> None:
        self.window = window
        self.max_keys = max_keys
        self.max_items = max_items
        self._keys: OrderedDict[K, OrderedDict[Hashable, float]] = OrderedDict()

    def add(self, key: K, item: Hashable, ts: float) -> int:
        items = self._keys.get(key)
        if items is None:
            items = self._keys[key] = OrderedDict()
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        horizon = ts - self.window
        while items:
            first = next(iter(items.values()))
            if first >= horizon:
                break
            items.popitem(last=False)
        if item in items:
            return 0
        items[item] = ts
        if len(items) > self.max_items:
            items.popitem(last=False)
        return len(items)

    def items(self, key: K) -> list[Hashable]:
        return list(self._keys.get(key, {}))


class RateWindow(Generic[K]):
    """Per key, the timestamps of the last ``window`` seconds (count of events in the window)."""

    def __init__(self, window: float, max_keys: int = 10_000, max_events: int = 100_000) -> None:
        self.window = window
        self.max_keys = max_keys
        self.max_events = max_events
        self._keys: OrderedDict[K, deque[float]] = OrderedDict()

    def add(self, key: K, ts: float) -> int:
        q = self._keys.get(key)
        if q is None:
            q = self._keys[key] = deque(maxlen=self.max_events)
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        q.append(ts)
        horizon = ts - self.window
        while q and q[0] < horizon:
            q.popleft()
        return len(q)

    def reset(self, key: K) -> None:
        self._keys.pop(key, None)
