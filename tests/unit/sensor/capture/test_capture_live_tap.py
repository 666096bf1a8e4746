"""Live capture on several interfaces at once (sensor/capture/live.py): a TAP's two monitor ports, each
carrying one direction, captured by one LiveSource give the whole conversation, in capture order, each
frame tagged with its interface, with counters per interface that add up to the source's. Root tests
build two veth pairs and send a real pymodbus capture split by direction; skipped without root."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from zw_paths import PCAPS
from zw_tap import CLIENT_TO_SERVER, SERVER_TO_CLIENT, send_as_tap, tap_sides
from zw_veth import tx_packets, veth_pair
from zw_wait import wait_for

from sensor.capture.base import CaptureCounters, Source
from sensor.capture.live import LiveSource
from sensor.errors import CaptureError
from sensor.records import Frame
from sensor.runtime import Sensor, SensorConfig, replay

MODBUS = PCAPS / "modbus-pymodbus-polling.pcap"
MISSING = "zw-no-such-if0"


class _Frames(Source):
    def __init__(self, frames: list[Frame]) -> None:
        super().__init__()
        self._frames = frames

    def frames(self) -> Iterator[Frame]:
        yield from self._frames


def _modbus_of(frames: list[Frame]) -> dict[str, Any]:
    """The modbus section of a sensor fed ``frames`` in order."""
    sensor = Sensor(SensorConfig())
    sensor.run_source(_Frames(frames))
    section: dict[str, Any] = sensor.finish()["modbus"]
    return section


def _packet_sockets_held() -> set[str]:
    """Inodes of the AF_PACKET sockets this process holds open (/proc/net/packet: last column)."""
    lines = Path("/proc/net/packet").read_text().splitlines()[1:]
    packet_inodes = {line.split()[-1] for line in lines}
    held = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in packet_inodes:
            held.add(target[8:-1])
    return held


def _capture_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("capture-")]


@pytest.fixture
def tap() -> Iterator[tuple[tuple[str, str], tuple[str, str]]]:
    """Two veth pairs: (capture end, sending end) of the client->server port, then of the other."""
    with veth_pair("zwta") as client_to_server, veth_pair("zwtb") as server_to_client:
        yield client_to_server, server_to_client


# --------------------------------------------------------------------------------------------------
# No root needed
# --------------------------------------------------------------------------------------------------


def test_interfaces_keep_their_order_and_one_given_twice_is_one() -> None:
    source = LiveSource(["eth1", "eth2", "eth1"])
    assert source.interfaces == ("eth1", "eth2")
    assert source.interface == "eth1,eth2"
    assert source.warnings == ["interface given more than once, captured once: eth1"]
    assert set(source.counters_by_interface()) == {"eth1", "eth2"}
    single = LiveSource("eth0")
    assert (single.interfaces, single.interface, single.warnings) == (("eth0",), "eth0", [])
    for empty in ([], [""]):
        with pytest.raises(ValueError):
            LiveSource(empty)


def test_counters_are_a_fresh_sum_and_cannot_be_replaced() -> None:
    source = LiveSource(["eth1", "eth2"])
    with pytest.raises(AttributeError):
        source.counters = CaptureCounters()
    assert source.counters == CaptureCounters()
    total = source.counters
    total.packets += 5  # a copy: the source's own counters do not change
    assert source.counters.packets == 0


# --------------------------------------------------------------------------------------------------
# Root: two veth pairs as a TAP's two monitor ports
# --------------------------------------------------------------------------------------------------


@pytest.mark.needs_root
def test_tap_halves_on_two_interfaces_give_every_transaction(
    tap: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    (capture_a, send_a), (capture_b, send_b) = tap
    sides = tap_sides(MODBUS, 502)
    halves = {side: [data for s, data in sides if s == side] for side in (CLIENT_TO_SERVER, SERVER_TO_CLIENT)}
    assert (len(halves[CLIENT_TO_SERVER]), len(halves[SERVER_TO_CLIENT])) == (30, 28)
    both = LiveSource([capture_a, capture_b])
    only_a, only_b = LiveSource(capture_a), LiveSource(capture_b)
    started = []
    try:
        for source in (both, only_a, only_b):
            source.start()
            started.append(source)
        assert both.linktypes == {capture_a: 1, capture_b: 1}
        tx_before = (tx_packets(capture_a), tx_packets(capture_b))

        def captured(sent: int) -> None:  # the next frame leaves once this one is queued: capture order
            wait_for(lambda: both.counters.packets >= sent, timeout=5, interval=0.0005)

        send_as_tap(sides, (send_a, send_b), after_each=captured)
        wait_for(lambda: only_a.counters.packets >= 30 and only_b.counters.packets >= 28, timeout=5)
        for source in started:
            source.stop()
        got = {id(source): list(source.frames()) for source in started}
    finally:
        for source in started:
            source.close()
    assert _capture_threads() == []
    frames = got[id(both)]
    assert [f.data for f in frames] == [data for _, data in sides]  # every frame, in capture order
    assert [f.interface for f in frames] == [side for side, _ in sides]  # the side each came from
    assert {f.linktype for f in frames} == {1}
    assert [f.data for f in got[id(only_a)]] == halves[CLIENT_TO_SERVER]
    assert [f.data for f in got[id(only_b)]] == halves[SERVER_TO_CLIENT]
    assert {f.interface for f in got[id(only_a)] + got[id(only_b)]} == {0}

    by_interface = both.counters_by_interface()
    assert list(by_interface) == [capture_a, capture_b]
    for name, half in ((capture_a, CLIENT_TO_SERVER), (capture_b, SERVER_TO_CLIENT)):
        counters = by_interface[name]
        assert (counters["packets"], counters["bytes"]) == (len(halves[half]), sum(map(len, halves[half])))
        assert counters["queue_drops"] == counters["kernel_drops"] == 0
    total = both.counters.as_dict()
    assert total == {key: sum(c[key] for c in by_interface.values()) for key in total}
    assert total["packets"] == len(sides)

    # Both ports together: every request paired with its response, as a replay of the capture gives.
    replayed = replay([MODBUS])[0]["modbus"]
    assert replayed["transactions_by_status"] == {"ok": 24}
    assert _modbus_of(frames) == replayed
    # One port alone: requests that stay unanswered, or responses to requests never seen; none pairs.
    requests_only, responses_only = _modbus_of(got[id(only_a)]), _modbus_of(got[id(only_b)])
    assert requests_only["transactions_by_status"] == {"unanswered": 24}
    assert requests_only["responses_by_function"] == {}
    assert responses_only["transactions_by_status"] == {"unsolicited": 24}
    assert responses_only["requests_by_function"] == {}
    assert (tx_packets(capture_a), tx_packets(capture_b)) == tx_before, "the sensor transmitted"


@pytest.mark.needs_root
def test_tap_frames_sent_back_to_back_come_out_in_capture_order(
    tap: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    """No pause between frames: a response leaves right after its request, and the two capture threads
    queue them in whatever order they run. The source hands them over by kernel timestamp, so every
    request still comes before its response and each transaction pairs."""
    (capture_a, send_a), (capture_b, send_b) = tap
    sides = tap_sides(MODBUS, 502)
    source = LiveSource([capture_a, capture_b])
    try:
        source.start()
        send_as_tap(sides, (send_a, send_b))
        wait_for(lambda: source.counters.packets >= len(sides), timeout=5)
        source.stop()
        frames = list(source.frames())
    finally:
        source.close()
    assert [f.data for f in frames] == [data for _, data in sides]
    assert [f.ts for f in frames] == sorted(f.ts for f in frames)
    assert _modbus_of(frames)["transactions_by_status"] == {"ok": 24}


@pytest.mark.needs_root
@pytest.mark.parametrize("missing_first", [False, True])
def test_one_missing_interface_among_two_fails_start_and_leaves_nothing_open(
    tap: tuple[tuple[str, str], tuple[str, str]], missing_first: bool
) -> None:
    (capture_a, _), _ = tap
    held_before = _packet_sockets_held()
    names = [MISSING, capture_a] if missing_first else [capture_a, MISSING]
    source = LiveSource(names)
    with pytest.raises(CaptureError) as info:
        source.start()
    message = str(info.value)
    assert message.startswith(f"{MISSING}: cannot capture: ") and "\n" not in message
    assert capture_a not in message
    assert _capture_threads() == []
    assert _packet_sockets_held() == held_before  # the socket opened on capture_a was closed again


@pytest.mark.needs_root
def test_interface_gone_while_capturing_ends_capture_naming_it(
    tap: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    (capture_a, send_a), (capture_b, _) = tap
    source = LiveSource([capture_a, capture_b])
    source.start()
    try:
        sides = tap_sides(MODBUS, 502)[:3]
        send_as_tap([(0, data) for _, data in sides], (send_a,))
        wait_for(lambda: source.counters.packets >= 3, timeout=5)
        subprocess.run(["ip", "link", "del", capture_b], check=True, capture_output=True)
        frames: list[Frame] = []
        with pytest.raises(CaptureError) as info:
            frames.extend(source.frames())  # ends on its own: no stop() was called
    finally:
        source.close()
    assert str(info.value).startswith(f"{capture_b}: capture failed: ")
    assert [f.data for f in frames] == [data for _, data in sides]  # what was queued still came out
    assert _capture_threads() == []  # the other interface's thread ended too


@pytest.mark.needs_root
def test_same_interface_given_twice_hands_each_frame_over_once(
    tap: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    (capture_a, send_a), _ = tap
    sent = [data for _, data in tap_sides(MODBUS, 502)[:5]]
    source = LiveSource([capture_a, capture_a])
    try:
        source.start()
        assert _capture_threads() == [f"capture-{capture_a}"]
        send_as_tap([(0, data) for data in sent], (send_a,))
        wait_for(lambda: source.counters.packets >= len(sent), timeout=5)
        source.stop()
        frames = list(source.frames())
    finally:
        source.close()
    assert [f.data for f in frames] == sent
    assert {f.interface for f in frames} == {0}
    assert source.counters.packets == len(sent)
