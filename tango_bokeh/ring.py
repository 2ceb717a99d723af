"""A bounded ring of samples read through independent cursors.

Writers append; every reader remembers the sequence number it has read up
to. Nothing is copied per reader: readers get references to the stored
samples. A reader that falls more than ``capacity`` behind loses the oldest
items and is told how many.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class Ring(Generic[T]):
    """Fixed-capacity circular store indexed by a monotonically growing sequence number.

    Not thread-safe by itself: the owner serialises access.
    """

    __slots__ = ("_capacity", "_end", "_floor", "_items")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("ring capacity must be at least 1")
        self._capacity = capacity
        self._items: list[T | None] = [None] * capacity
        self._end = 0  # sequence number of the next item to be written
        self._floor = 0  # nothing older than this is held (set when shrinking)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def end(self) -> int:
        """Sequence number one past the newest item."""
        return self._end

    @property
    def start(self) -> int:
        """Sequence number of the oldest item still held."""
        return max(self._floor, self._end - self._capacity)

    def __len__(self) -> int:
        return self._end - self.start

    def append(self, item: T) -> None:
        self._items[self._end % self._capacity] = item
        self._end += 1

    def latest(self) -> T | None:
        return self._items[(self._end - 1) % self._capacity] if self._end else None

    def since(self, seq: int) -> tuple[list[T], int]:
        """Items from sequence number ``seq`` on, and how many were lost before them."""
        start = self.start
        lost = max(0, start - seq)
        first = max(seq, start)
        cap = self._capacity
        items = self._items
        return [items[i % cap] for i in range(first, self._end)], lost  # type: ignore[misc]

    def release(self, seq: int) -> None:
        """Forget items before ``seq`` (every reader is past them), keeping the newest one.

        Holding only unread items keeps a busy process's heap small: a full ring
        of 10,000 samples per attribute is millions of objects for the garbage
        collector to walk on a large dashboard.
        """
        upto = min(seq, self._end - 1)
        cap = self._capacity
        items = self._items
        for i in range(self.start, upto):
            items[i % cap] = None
        self._floor = max(self._floor, upto)

    def resize(self, capacity: int) -> None:
        """Change the capacity, keeping the newest items; sequence numbers are preserved."""
        if capacity < 1:
            raise ValueError("ring capacity must be at least 1")
        kept, _ = self.since(max(self.start, self._end - capacity))
        self._capacity = capacity
        self._items = [None] * capacity
        self._floor = self._end - len(kept)
        for offset, item in enumerate(kept):
            self._items[(self._end - len(kept) + offset) % capacity] = item
