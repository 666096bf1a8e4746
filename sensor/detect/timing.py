"""Timing of polled Modbus series: polling that stops, polling far faster than learned, new periodic
traffic. All in packet time: a stop is noticed as the capture advances past the series' deadline,
never by a clock, so a replay gives the same alerts as the live sensor did.

A series (client, server, unit, function, first address) is *periodic* when learning saw at least
``MIN_INTERVALS`` intervals whose standard deviation is at most ``MAX_CV`` of their mean. Its
deadline after each request is ``max(STOP_MEAN_FACTOR * mean, STOP_MAX_FACTOR * longest learned
interval, MIN_SILENCE)``: generous enough for a master that skips a cycle, tight enough to notice a
device or link that is down within a few periods.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import Any, Final

from sensor.detect.baseline import Baseline, RunningStats
from sensor.detect.findings import Finding
from sensor.detect.novelty import Emit
from sensor.dissectors.modbus.codes import function_name
from sensor.records import FlowRef

MIN_INTERVALS: Final = 5
MAX_CV: Final = 0.5
STOP_MEAN_FACTOR: Final = 10.0
STOP_MAX_FACTOR: Final = 4.0
MIN_SILENCE: Final = 1.0
FAST_FACTOR: Final = 0.25  # an interval below this fraction of the shortest learned one is "fast"
FAST_STREAK: Final = 5
MIN_FAST_PERIOD: Final = 0.05  # series polled faster than this are not judged for speed
NEW_PERIODIC_INTERVALS: Final = 8
NEW_PERIODIC_CV: Final = 0.25
MAX_NEW_SERIES: Final = 10_000


def is_periodic(stats: RunningStats | None) -> bool:
    return (
        stats is not None and stats.n >= MIN_INTERVALS and stats.mean > 0 and stats.std <= MAX_CV * stats.mean
    )


def stop_after(stats: RunningStats) -> float:
    return max(STOP_MEAN_FACTOR * stats.mean, STOP_MAX_FACTOR * stats.hi, MIN_SILENCE)


def describe_series(key: tuple[Any, ...]) -> str:
    client, server, unit, fc, addr = key
    return f"FC {fc} ({function_name(fc)}) from {client} to {server} unit {unit} address {addr}"


class TimingDetector:
    def __init__(self, baseline: Baseline, emit: Emit) -> None:
        self.baseline = baseline
        self.emit = emit
        # Last request of each learned series (bounded by the baseline's series cap) and, least
        # recently used first, of series the baseline does not know (an attacker makes one per address).
        self.last: dict[tuple[Any, ...], tuple[float, FlowRef]] = {}
        self.last_new: OrderedDict[tuple[Any, ...], tuple[float, FlowRef]] = OrderedDict()
        self.deadline: dict[tuple[Any, ...], float] = {}
        self._heap: list[tuple[float, int, tuple[Any, ...]]] = []
        self._seq = 0
        self.fast_streak: dict[tuple[Any, ...], int] = {}
        self.new_series: OrderedDict[tuple[Any, ...], RunningStats] = OrderedDict()
        self.reported_new: set[tuple[Any, ...]] = set()

    def _arm(self, key: tuple[Any, ...], ts: float, stats: RunningStats) -> None:
        d = ts + stop_after(stats)
        self.deadline[key] = d
        self._seq += 1
        heapq.heappush(self._heap, (d, self._seq, key))

    def start(self) -> None:
        """Learning just ended: arm deadlines for the periodic series seen so far."""
        for key, (ts, _flow) in self.last.items():
            stats = self.baseline.polls.get(key)
            if is_periodic(stats):
                assert stats is not None
                self._arm(key, ts, stats)

    def _remember(self, key: tuple[Any, ...], ts: float, flow: FlowRef) -> tuple[float, FlowRef] | None:
        """Record this request of the series; the previous one, if still known."""
        if key in self.baseline.polls:
            prev = self.last.get(key)
            self.last[key] = (ts, flow)
            return prev
        last_new = self.last_new
        prev = last_new.pop(key, None)
        last_new[key] = (ts, flow)
        if len(last_new) > MAX_NEW_SERIES:
            last_new.popitem(last=False)
        return prev

    def seen(self, key: tuple[Any, ...], ts: float, flow: FlowRef) -> None:
        """A request of a series while learning: remember when, judge nothing."""
        self._remember(key, ts, flow)

    def poll(self, key: tuple[Any, ...], ts: float, flow: FlowRef) -> None:
        prev = self._remember(key, ts, flow)
        stats = self.baseline.polls.get(key)
        if stats is None:
            self._new_series(key, ts, prev[0] if prev else None, flow)
            return
        if not is_periodic(stats):
            return
        self._arm(key, ts, stats)
        if prev is None or stats.mean < MIN_FAST_PERIOD:
            return
        interval = ts - prev[0]
        if interval < FAST_FACTOR * stats.lo:
            streak = self.fast_streak.get(key, 0) + 1
            self.fast_streak[key] = streak
            if streak >= FAST_STREAK and not self.baseline.allows("polling_too_fast", key[0], key[1]):
                self.emit(
                    Finding(
                        "polling_too_fast",
                        ts,
                        key[0],
                        key[1],
                        f"polling far faster than learned: {describe_series(key)} every {interval:.3g} s "
                        f"({streak} in a row; learned {stats.mean:.3g} s, shortest {stats.lo:.3g} s)",
                        flow=flow,
                        app_proto="modbus",
                        facts=[("allow", "polling_too_fast", key[0], key[1])],
                        count=streak if streak == FAST_STREAK else 1,
                    )
                )
        else:
            self.fast_streak.pop(key, None)

    def _new_series(self, key: tuple[Any, ...], ts: float, prev: float | None, flow: FlowRef) -> None:
        if key in self.reported_new or prev is None or ts <= prev:
            return
        stats = self.new_series.get(key)
        if stats is None:
            stats = self.new_series[key] = RunningStats()
            while len(self.new_series) > MAX_NEW_SERIES:
                self.new_series.popitem(last=False)
        stats.add(ts - prev)
        if (
            stats.n >= NEW_PERIODIC_INTERVALS
            and stats.mean >= MIN_FAST_PERIOD
            and stats.std <= NEW_PERIODIC_CV * stats.mean
        ):
            if len(self.reported_new) >= MAX_NEW_SERIES:
                # bounded like new_series: forgetting an old report at worst repeats one alert
                self.reported_new.clear()
            self.reported_new.add(key)
            del self.new_series[key]
            if self.baseline.allows("new_periodic_traffic", key[0], key[1]):
                return
            self.emit(
                Finding(
                    "new_periodic_traffic",
                    ts,
                    key[0],
                    key[1],
                    f"new periodic traffic: {describe_series(key)} every {stats.mean:.3g} s "
                    f"(jitter {stats.std:.2g} s), never polled while learning",
                    flow=flow,
                    app_proto="modbus",
                    facts=[("allow", "new_periodic_traffic", key[0], key[1])],
                )
            )

    def tick(self, now: float) -> None:
        """Report series whose deadline passed (cheap when none is due: one heap peek)."""
        heap = self._heap
        while heap and heap[0][0] < now:
            d, _, key = heapq.heappop(heap)
            if self.deadline.get(key) != d:
                continue  # polled again since: a later deadline is queued
            del self.deadline[key]
            stats = self.baseline.polls.get(key)
            if stats is None:
                continue  # forgotten since it was armed (an asset reset through the API, in place)
            last_ts, flow = self.last[key]
            if self.baseline.allows("polling_stopped", key[0], key[1]):
                continue
            self.emit(
                Finding(
                    "polling_stopped",
                    now,
                    key[0],
                    key[1],
                    f"polling stopped: {describe_series(key)} not seen for {now - last_ts:.3g} s "
                    f"(learned every {stats.mean:.3g} s ± {stats.std:.2g}); device or link down?",
                    flow=flow,
                    app_proto="modbus",
                    facts=[("allow", "polling_stopped", key[0], key[1])],
                    details={"last_request": last_ts, "learned_period": stats.mean},
                )
            )
