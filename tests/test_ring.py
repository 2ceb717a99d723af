"""The ring buffer and its cursors' arithmetic."""

import pytest

from tango_bokeh.ring import Ring


def test_readers_see_only_new_items():
    ring: Ring[int] = Ring(4)
    for i in range(3):
        ring.append(i)
    items, lost = ring.since(0)
    assert items == [0, 1, 2] and lost == 0
    seq = ring.end
    ring.append(3)
    assert ring.since(seq) == ([3], 0)
    assert ring.since(ring.end) == ([], 0)


def test_overflow_reports_lost_items():
    ring: Ring[int] = Ring(3)
    for i in range(10):
        ring.append(i)
    assert ring.start == 7 and len(ring) == 3
    assert ring.since(2) == ([7, 8, 9], 5)
    assert ring.latest() == 9


def test_two_readers_share_items_without_copies():
    ring: Ring[object] = Ring(8)
    payload = object()
    ring.append(payload)
    first, _ = ring.since(0)
    second, _ = ring.since(0)
    assert first[0] is second[0] is payload


def test_resize_keeps_the_newest_and_the_sequence():
    ring: Ring[int] = Ring(10)
    for i in range(8):
        ring.append(i)
    ring.resize(3)
    assert ring.since(0) == ([5, 6, 7], 5)
    ring.append(8)
    assert ring.since(7) == ([7, 8], 0)
    ring.resize(6)
    assert ring.since(0)[0] == [6, 7, 8]


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        Ring(0)


def test_release_forgets_what_every_reader_has_seen_but_the_newest():
    ring: Ring[int] = Ring(100)
    for i in range(50):
        ring.append(i)
    ring.release(40)
    assert len(ring) == 10 and ring.since(40) == (list(range(40, 50)), 0)
    ring.release(1000)  # never the newest: a new reader must see the current value
    assert len(ring) == 1 and ring.latest() == 49
    assert ring.since(0) == ([49], 49)
    ring.append(50)
    assert ring.since(49) == ([49, 50], 0)
