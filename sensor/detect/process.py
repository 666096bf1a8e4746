"""Process values: numeric register, node and topic values judged against what learning saw.

Counters and ramps (values that only rose, or only fell, while learning) are judged on rate only.
Three tests per value (key ``(protocol, server, ...)``), only once learning saw ``MIN_SAMPLES``:

* range: outside ``[min - m, max + m]``, ``m`` from :func:`range_margin`;
* rate: a change faster than ``RATE_FACTOR`` times the largest rate of change learned (units per
  second of packet time), and larger than the margin (so that a 1-count flicker is not "fast");
* drift: a two-sided CUSUM (Page, "Continuous inspection schemes", Biometrika 1954) of the value
  standardised by the learned mean and deviation, ``S+ = max(0, S+ + z - k)``, raising when ``S`` >
  ``h`` *and* a least-squares line through the last ``DRIFT_SAMPLES`` values explains most of their
  variance (r² >= ``DRIFT_R2``) with a slope in the same direction *and* the value has left the
  learned [min, max]: a sustained creep beyond normal, such as a bearing temperature rising, not
  noise around a shifted mean. It fires before the range test (which allows a margin).
  The statistic restarts after
  raising, so an ongoing drift raises again (aggregated into one alert with a count).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from sensor.detect.baseline import Baseline, ValueStats
from sensor.detect.findings import Finding
from sensor.detect.learn import MIN_RATE_DT, TABLE_WORDS
from sensor.detect.novelty import Emit
from sensor.records import FlowRef

MIN_SAMPLES: Final = 10
RANGE_MARGIN: Final = 0.1
RANGE_SIGMAS: Final = 3.0
RANGE_RELATIVE: Final = 0.02
RATE_FACTOR: Final = 2.0
CUSUM_K: Final = 0.5
CUSUM_H: Final = 12.0
DRIFT_SAMPLES: Final = 20
DRIFT_R2: Final = 0.6
MAX_TRACKED: Final = 100_000


def range_margin(key: tuple[Any, ...], vs: ValueStats) -> float:
    """How far outside the learned [min, max] a value may go before it is "out of range".

    The largest of: a tenth of the learned span, three learned standard deviations, 2 % of the
    learned mean's magnitude, and for Modbus registers one count (a register that sat at 1 while
    learning and reads 2 is a quantisation step, not an excursion).
    """
    s = vs.stats
    margin = max(RANGE_MARGIN * (s.hi - s.lo), RANGE_SIGMAS * s.std, RANGE_RELATIVE * abs(s.mean))
    return max(margin, 1.0) if key[0] == "modbus" else margin


def describe_value(key: tuple[Any, ...]) -> str:
    proto = key[0]
    if proto == "modbus":
        _, server, unit, table, addr = key
        return f"{TABLE_WORDS.get(table, table).rstrip('s')} {addr} on {server} unit {unit}"
    if proto == "opcua":
        return f"OPC UA node {key[2]} on {key[1]}"
    if proto == "mqtt":
        field = f" field {key[3]!r}" if key[3] else ""
        return f"MQTT topic {key[2]!r}{field} on {key[1]}"
    return str(key)


def regression(points: deque[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares slope (units/s) and r² of (t, v) points; (0, 0) when undefined."""
    n = len(points)
    if n < 3:
        return 0.0, 0.0
    t0 = points[0][0]
    mt = sum(t - t0 for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    stt = sum((t - t0 - mt) ** 2 for t, _ in points)
    svv = sum((v - mv) ** 2 for _, v in points)
    stv = sum((t - t0 - mt) * (v - mv) for t, v in points)
    if stt <= 0 or svv <= 0:
        return 0.0, 0.0
    slope = stv / stt
    return slope, (stv * stv) / (stt * svv)


class _Track:
    __slots__ = ("last_ts", "last_v", "lo", "recent", "up")

    def __init__(self) -> None:
        self.last_v = 0.0
        self.last_ts = -1.0
        self.up = 0.0  # CUSUM statistics
        self.lo = 0.0
        self.recent: deque[tuple[float, float]] = deque(maxlen=DRIFT_SAMPLES)


class ProcessDetector:
    def __init__(self, baseline: Baseline, emit: Emit) -> None:
        self.baseline = baseline
        self.emit = emit
        self.tracks: dict[tuple[Any, ...], _Track] = {}

    def value(
        self, key: tuple[Any, ...], v: float, ts: float, flow: FlowRef, src: str, dst: str, proto: str
    ) -> None:
        vs = self.baseline.values.get(key)
        if vs is None or vs.stats.n < MIN_SAMPLES:
            return
        track = self.tracks.get(key)
        if track is None:
            if len(self.tracks) >= MAX_TRACKED:
                return
            track = self.tracks[key] = _Track()
        prev_v, prev_ts = track.last_v, track.last_ts
        track.last_v, track.last_ts = v, ts
        track.recent.append((ts, v))
        s = vs.stats
        margin = range_margin(key, vs)
        what = describe_value(key)
        allows = self.baseline.allows
        counter = vs.monotonic
        if (
            not counter
            and (v < s.lo - margin or v > s.hi + margin)
            and not allows("process_value_out_of_range", src, dst)
        ):
            self.emit(
                Finding(
                    "process_value_out_of_range",
                    ts,
                    src,
                    dst,
                    f"{what} = {v:g}, outside the learned {s.lo:g}..{s.hi:g} ({s.n} samples)",
                    flow=flow,
                    app_proto=proto,
                    facts=[("process_range", list(key), v)],
                    details={"value": v, "learned": vs.as_dict()},
                )
            )
        elif prev_ts >= 0 and ts - prev_ts >= MIN_RATE_DT:
            dv = v - prev_v
            rate = abs(dv) / (ts - prev_ts)
            if (
                rate > RATE_FACTOR * vs.max_rate
                and abs(dv) > margin
                and not allows("process_value_rate", src, dst)
            ):
                self.emit(
                    Finding(
                        "process_value_rate",
                        ts,
                        src,
                        dst,
                        f"{what} changed {prev_v:g} -> {v:g} in {ts - prev_ts:.3g} s ({rate:.3g}/s), faster "
                        f"than ever learned ({vs.max_rate:.3g}/s)",
                        flow=flow,
                        app_proto=proto,
                        facts=[("process_rate", list(key), rate)],
                        details={"from": prev_v, "to": v, "seconds": ts - prev_ts, "learned": vs.as_dict()},
                    )
                )
        if not counter:
            self._drift(key, vs, track, v, ts, flow, src, dst, proto, what)

    def _drift(
        self,
        key: tuple[Any, ...],
        vs: ValueStats,
        track: _Track,
        v: float,
        ts: float,
        flow: FlowRef,
        src: str,
        dst: str,
        proto: str,
        what: str,
    ) -> None:
        s = vs.stats
        sigma = max(s.std, 0.05 * (s.hi - s.lo), 1e-6 * abs(s.mean), 1e-9)
        z = (v - s.mean) / sigma
        track.up = max(0.0, track.up + z - CUSUM_K)
        track.lo = max(0.0, track.lo - z - CUSUM_K)
        if track.up <= CUSUM_H and track.lo <= CUSUM_H:
            return
        direction = 1 if track.up > CUSUM_H else -1
        cusum = track.up if direction > 0 else track.lo
        if len(track.recent) < DRIFT_SAMPLES:
            return
        if (direction > 0 and v <= s.hi) or (direction < 0 and v >= s.lo):
            return  # still inside what learning saw: a shifted mean, not yet a creep beyond normal
        slope, r2 = regression(track.recent)
        if r2 < DRIFT_R2 or slope * direction <= 0:
            return
        track.up = track.lo = 0.0
        if self.baseline.allows("process_value_drift", src, dst):
            return
        self.emit(
            Finding(
                "process_value_drift",
                ts,
                src,
                dst,
                f"{what} drifting {'up' if direction > 0 else 'down'}: learned mean {s.mean:g} (sd "
                f"{s.std:.3g}), "
                f"last {len(track.recent)} samples trend {slope:+.3g}/s (r² {r2:.2f}), now {v:g}, "
                f"CUSUM {cusum:.1f} sd",
                flow=flow,
                app_proto=proto,
                facts=[("allow", "process_value_drift", src, dst)],
                details={"value": v, "slope_per_s": slope, "r2": r2, "cusum": cusum, "learned": vs.as_dict()},
            )
        )
