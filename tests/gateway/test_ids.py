"""Job ids sort by creation time and stay unguessable (gateway/ids.py)."""

from __future__ import annotations

from gateway.ids import time_ordered_id


def test_ids_are_32_hex_digits_that_sort_by_creation_time() -> None:
    ids = [time_ordered_id(at) for at in (1_700_000_000_000, 1_700_000_000_001,
                                          1_800_000_000_000)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert ids == sorted(ids)
    assert ids[0][:12] == f"{1_700_000_000_000:012x}"
    same_moment = {time_ordered_id(1_700_000_000_000) for _ in range(1000)}
    assert len(same_moment) == 1000  # 80 random bits apart
