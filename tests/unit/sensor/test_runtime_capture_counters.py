"""sensor/runtime.py: the capture counters of the source being read count while it is read (a live
capture's drops reach ``saved_counters()``, which the store saves at each commit, and ``summary()``, which
``GET /api/v1/status`` shows), and count exactly once after the source closed, including what the source
counted while closing (a live capture thread reads its last kernel drops then)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor.capture.base import Source
from sensor.records import Frame
from sensor.runtime import Sensor, SensorConfig
from sensor.store.sqlite import Store
from sensor.store.summary_counters import unflatten_summary

FRAME = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x88\xb5" + b"\x00" * 46  # local experimental type


class GrowingSource(Source):
    """Counts like a live source: every frame received, one in three dropped on a full queue, and
    ``closing_kernel_drops`` read at close."""

    def __init__(self, frames: int, closing_kernel_drops: int = 0) -> None:
        super().__init__()
        self.count = frames
        self.closing_kernel_drops = closing_kernel_drops
        self.closed = 0

    def frames(self) -> Iterator[Frame]:
        for n in range(self.count):
            self.counters.packets += 1
            self.counters.bytes += len(FRAME)
            if n % 3 == 2:
                self.counters.queue_drops += 1
                continue
            yield Frame(float(n), 1, FRAME, len(FRAME))

    def close(self) -> None:
        if not self.closed:
            self.counters.kernel_drops += self.closing_kernel_drops
        self.closed += 1


def test_counters_of_the_source_being_read_show_mid_run_and_count_once_after(tmp_path: Path) -> None:
    db = tmp_path / "zw.db"
    sensor = Sensor(SensorConfig(db_path=db))
    source = GrowingSource(30, closing_kernel_drops=7)
    seen: list[tuple[int, int, int, int]] = []

    def on_frame(frame: Frame) -> None:
        saved = unflatten_summary(sensor.saved_counters())["capture"]
        shown = sensor.summary()["capture"]
        assert saved == shown
        seen.append((saved["packets"], saved["bytes"], saved["queue_drops"], saved["kernel_drops"]))
        if frame.ts == 25.0:  # a periodic commit of a live sensor (sensor/live.py flush thread)
            sensor.inventory.flush(frame.ts)

    sensor.run_source(source, on_frame)
    # frame n is processed after n + 1 frames were received and n // 3 of them dropped
    assert seen == [(n + 1, (n + 1) * len(FRAME), n // 3, 0) for n in range(30) if n % 3 != 2]
    committed = Store(db, readonly=True)
    try:
        stored = unflatten_summary(committed.counters())["capture"]
    finally:
        committed.close()
    assert (stored["packets"], stored["queue_drops"]) == (26, 8)  # what the store saved mid-run

    # closed: absorbed once, with the drops counted while closing
    assert source.closed == 1
    expected = {"packets": 30, "bytes": 30 * len(FRAME), "queue_drops": 10, "kernel_drops": 7}
    for counters in (sensor.summary()["capture"], unflatten_summary(sensor.saved_counters())["capture"]):
        assert {k: counters[k] for k in expected} == expected
    summary = sensor.finish()
    assert {k: summary["capture"][k] for k in expected} == expected


def test_counters_sum_over_sources_and_survive_a_failing_one() -> None:
    sensor = Sensor(SensorConfig())
    sensor.run_source(GrowingSource(6, closing_kernel_drops=1))
    second = GrowingSource(9)

    def explode(frame: Frame) -> None:
        if frame.ts == 4.0:
            raise RuntimeError("pipeline bug")

    with pytest.raises(RuntimeError, match="pipeline bug"):
        sensor.run_source(second, explode)
    assert second.closed == 1
    capture = sensor.summary()["capture"]
    # the first source whole; the second up to frame 4 (5 received, 1 dropped)
    assert (capture["packets"], capture["queue_drops"], capture["kernel_drops"]) == (6 + 5, 2 + 1, 1)
    assert sensor.summary()["capture"] == capture  # nothing counted twice on a second read
