"""Per-series state of the timing detector and the learner stays bounded when an attacker reads a new
(client, server, unit, function, address) series with every request (hostile input G1): a recon
sweep over addresses must not grow the sensor's memory without end."""

from __future__ import annotations

from typing import Any

from sensor.detect import timing
from sensor.detect.baseline import Baseline, RunningStats
from sensor.detect.findings import Finding
from sensor.detect.learn import Learner
from sensor.detect.timing import TimingDetector
from sensor.records import FlowRef

FLOW = FlowRef(1, "1:x", "tcp", "10.0.0.66", 40000, "10.0.0.9", 502)


def _key(n: int) -> tuple[Any, ...]:
    return ("10.0.0.66", "10.0.0.9", 1, 3, n)


def test_timing_state_for_unlearned_series_is_capped() -> None:
    findings: list[Finding] = []
    detector = TimingDetector(Baseline(), findings.append)
    for n in range(timing.MAX_NEW_SERIES * 3):
        detector.poll(_key(n), float(n), FLOW)
    assert len(detector.last) + len(detector.last_new) <= timing.MAX_NEW_SERIES


def test_timing_state_while_learning_is_capped() -> None:
    detector = TimingDetector(Baseline(), lambda f: None)
    for n in range(timing.MAX_NEW_SERIES * 3):
        detector.seen(_key(n), float(n), FLOW)
    assert len(detector.last) + len(detector.last_new) <= timing.MAX_NEW_SERIES


def test_learned_series_still_gets_its_stop_deadline() -> None:
    baseline = Baseline()
    stats = RunningStats()
    for _ in range(10):
        stats.add(1.0)
    baseline.polls[_key(0)] = stats
    findings: list[Finding] = []
    detector = TimingDetector(baseline, findings.append)
    detector.poll(_key(0), 100.0, FLOW)
    for n in range(1, timing.MAX_NEW_SERIES * 2):
        detector.poll(_key(n), 100.0, FLOW)  # a sweep must not push the learned series out
    detector.tick(1000.0)
    assert [f.kind for f in findings] == ["polling_stopped"]


def test_learner_last_poll_is_capped_by_max_series() -> None:
    learner = Learner(Baseline(), max_series=100)
    for n in range(1000):
        learner.poll(_key(n), float(n))
    assert len(learner.baseline.polls) == 100
    assert len(learner.last_poll) == 100


def test_series_forgotten_by_a_live_asset_reset_is_not_reported_and_does_not_raise() -> None:
    # POST /api/v1/baseline/reset edits the running sensor's baseline in place while deadlines are armed.
    baseline = Baseline()
    stats = RunningStats()
    for _ in range(10):
        stats.add(1.0)
    baseline.polls[_key(0)] = stats
    findings: list[Finding] = []
    detector = TimingDetector(baseline, findings.append)
    detector.poll(_key(0), 100.0, FLOW)
    assert baseline.reset_asset("10.0.0.9") >= 1
    detector.tick(1000.0)
    assert findings == []


def test_reported_new_periodic_series_are_capped(monkeypatch: Any) -> None:
    """Every newly periodic series is reported once; the memory of what was reported stays bounded."""
    monkeypatch.setattr(timing, "MAX_NEW_SERIES", 50)
    findings: list[Finding] = []
    detector = TimingDetector(Baseline(), findings.append)
    period = max(timing.MIN_FAST_PERIOD, 1.0)
    for n in range(200):  # 200 series, each polled at a perfectly steady period
        for k in range(timing.NEW_PERIODIC_INTERVALS + 2):
            detector.poll(_key(n), 1000.0 * n + k * period, FLOW)
    assert len(findings) >= 200
    assert len(detector.reported_new) <= 50
