"""sensor/live.py LockedSource: the runner lock is held while a frame is processed and must be released
when processing fails, even while the failure's traceback (which keeps the frames generator alive) is
still referenced, e.g. by a logging handler that keeps records. Otherwise the runner's own shutdown
(``with self.lock`` in ``LiveRunner._run``) and every API reader of the sensor deadlock."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from sensor.capture.base import Source
from sensor.live import LockedSource
from sensor.records import Frame
from sensor.runtime import Sensor, SensorConfig


class _Frames(Source):
    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def frames(self) -> Iterator[Frame]:
        for n in range(self.count):
            yield Frame(float(n), 1, b"\x00" * 14, 14)


def test_lock_is_released_when_processing_a_frame_raises() -> None:
    sensor = Sensor(SensorConfig())

    def explode(frame: Frame) -> None:
        raise RuntimeError("pipeline bug")

    sensor.pipeline.process = explode  # type: ignore[method-assign]
    lock = threading.Lock()
    with pytest.raises(RuntimeError) as kept:  # `kept` holds the traceback, as a log record would
        sensor.run_source(LockedSource(_Frames(3), lock))
    assert kept.value.args == ("pipeline bug",)
    assert not lock.locked()


def test_lock_is_released_between_frames_and_after_the_last() -> None:
    lock = threading.Lock()
    source = LockedSource(_Frames(3), lock)
    held = []
    for _frame in source.frames():
        held.append(lock.locked())
    assert held == [True, True, True]
    assert not lock.locked()
