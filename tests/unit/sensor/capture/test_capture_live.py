"""Live capture on a real veth pair: bytes arrive intact, BPF filters, the queue drops instead of
blocking, and the capture end never transmits. Needs root; skipped otherwise."""

from __future__ import annotations

import os
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from zw_veth import tx_packets, veth_pair
from zw_wait import wait_for

from sensor.capture import live as live_module
from sensor.capture.live import LiveSource
from sensor.errors import CaptureError
from sensor.limits import Limits
from sensor.records import Frame


def _rx_packets(interface: str) -> int:
    return int(Path(f"/sys/class/net/{interface}/statistics/rx_packets").read_text())


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    with veth_pair("zwc", ()) as ends:
        yield ends


def _frame(dport: int, marker: int, proto: str = "tcp") -> bytes:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    transport = TCP(sport=40000, dport=dport, flags="PA") if proto == "tcp" else UDP(sport=40000, dport=dport)
    packet = (
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="127.0.0.1", dst="127.0.0.2")
        / transport
        / Raw(struct.pack(">HHHBBHH", marker, 0, 6, 1, 3, 0, 2))
    )
    return bytes(packet)


def _send(interface: str, frames: list[bytes]) -> None:
    from scapy.layers.l2 import Ether
    from scapy.sendrecv import sendp

    sendp([Ether(f) for f in frames], iface=interface, verbose=False)


def _collect(source: LiveSource, wanted: int, timeout: float = 10.0) -> list[Frame]:
    """Frames from ``source`` until ``wanted`` arrived or ``timeout`` passed, then stop it."""
    timer = threading.Timer(timeout, source.stop)
    timer.start()
    got: list[Frame] = []
    try:
        for frame in source.frames():
            got.append(frame)
            if len(got) >= wanted:
                source.stop()
    finally:
        timer.cancel()
        source.close()
    return got


def test_live_frames_arrive_with_exact_bytes_and_capture_never_transmits(veth: tuple[str, str]) -> None:
    capture_end, send_end = veth
    sent = [_frame(502, i) for i in range(5)]
    tx_before, rx_before = tx_packets(capture_end), _rx_packets(capture_end)
    source = LiveSource(capture_end)
    source.start()
    _send(send_end, sent)
    got = _collect(source, len(sent))
    assert [f.data for f in got] == sent
    assert {f.linktype for f in got} == {1}
    assert [f.wire_len for f in got] == [len(f) for f in sent]
    assert all(abs(f.ts - time.time()) < 60 for f in got)
    assert source.counters.packets == len(sent)
    assert source.counters.bytes == sum(map(len, sent))
    assert source.counters.queue_drops == 0
    assert _rx_packets(capture_end) - rx_before >= len(sent)
    assert tx_packets(capture_end) == tx_before


def test_live_bpf_filter_excludes_non_matching_frames(veth: tuple[str, str]) -> None:
    capture_end, send_end = veth
    excluded = [_frame(503, 100), _frame(502, 101, proto="udp"), _frame(80, 102)]
    wanted = [_frame(502, i) for i in range(3)]
    tx_before = tx_packets(capture_end)
    source = LiveSource(capture_end, bpf="tcp port 502")
    source.start()
    # Excluded frames go first: had the filter let them through, they would arrive first.
    _send(send_end, excluded + wanted)
    got = _collect(source, len(wanted))
    assert [f.data for f in got] == wanted
    assert source.counters.packets == len(wanted)
    assert tx_packets(capture_end) == tx_before


def test_live_full_queue_drops_and_never_blocks(veth: tuple[str, str]) -> None:
    capture_end, send_end = veth
    sent = [_frame(502, i) for i in range(50)]
    tx_before = tx_packets(capture_end)
    source = LiveSource(capture_end, limits=Limits(capture_queue_frames=4))
    source.start()
    _send(send_end, sent)
    # Nobody reads frames() yet: the capture thread must keep receiving and count the drops.
    deadline = time.monotonic() + 10
    while source.counters.packets < len(sent) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert source.counters.packets == len(sent)
    assert source.counters.queue_drops == len(sent) - 4
    source.stop()
    got = list(source.frames())  # drains what was queued, then ends
    source.close()
    assert [f.data for f in got] == sent[:4]
    assert tx_packets(capture_end) == tx_before


def test_live_queue_is_bounded_by_bytes_too(veth: tuple[str, str]) -> None:
    """Few frames, large ones (a kernel hands over up to 64 KiB with GRO): the byte cap drops first."""
    capture_end, send_end = veth
    sent = [_frame(502, i) + b"\x00" * 1000 for i in range(20)]  # padding after the IP datagram
    size = len(sent[0])
    source = LiveSource(capture_end, limits=Limits(capture_queue_frames=1000, capture_queue_bytes=5 * size))
    source.start()
    _send(send_end, sent)
    wait_for(lambda: source.counters.packets >= len(sent), timeout=10)
    assert source.counters.queue_drops == len(sent) - 5
    source.stop()
    got = list(source.frames())
    source.close()
    assert [f.data for f in got] == sent[:5]
    assert source._bytes_put == [5 * size] and source._bytes_taken == 5 * size  # all handed over


def test_frames_waiting_to_be_ordered_still_count_against_the_byte_cap() -> None:
    frames = [Frame(10.0 + i / 1000, 1, b"x" * 100, 100, i % 2) for i in range(4)]
    source = _queued(frames, ["a", "b"])
    source._bytes_put = [200, 200]  # as the two capture threads counted them when they queued them
    out = source.frames()
    first = next(out)  # all four were taken off the queue (none is 50 ms older than the newest)...
    assert first == frames[0] and source._queue.empty()
    assert source._bytes_taken == 100  # ...but only the one handed over stopped counting
    assert list(out) == frames[1:] and source._bytes_taken == 400


def test_live_unknown_interface_is_a_capture_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("opening an AF_PACKET socket needs root")
    source = LiveSource("zw-no-such-if0")
    with pytest.raises(CaptureError) as info:
        source.start()
    assert str(info.value).startswith("zw-no-such-if0: ")
    assert "\n" not in str(info.value)


def test_live_bad_bpf_filter_is_a_capture_error(veth: tuple[str, str]) -> None:
    source = LiveSource(veth[0], bpf="tcp port")
    with pytest.raises(CaptureError) as info:
        source.start()
    assert "\n" not in str(info.value)


class _FakeRawSocket:
    def __init__(self, stats: list[tuple[int, int]]) -> None:
        self._stats = stats

    def getsockopt(self, level: int, option: int, size: int) -> bytes:
        assert (level, option, size) == (263, 6, 8)
        return struct.pack("II", *self._stats.pop(0))


class _FakeListenSocket:
    def __init__(self, stats: list[tuple[int, int]]) -> None:
        self.ins = _FakeRawSocket(stats)


def test_live_kernel_drops_accumulate_because_the_kernel_resets_them_on_read() -> None:
    source = LiveSource("unused")
    sock = _FakeListenSocket([(100, 3), (50, 0), (70, 9)])
    for _ in range(3):
        source._read_kernel_drops(sock, source._counters[0])
    assert source.counters.kernel_drops == 12


def _queued(frames: list[Frame], interfaces: list[str]) -> LiveSource:
    """A source whose capture threads already queued ``frames`` and ended (no socket is opened)."""
    source = LiveSource(interfaces)
    source.start = lambda: None  # type: ignore[method-assign]
    for frame in frames:
        source._queue.put_nowait(frame)
    for done in source._finished:
        done.set()
    return source


def test_frames_of_a_taps_two_ports_come_out_in_capture_order() -> None:
    """The port carrying responses had its thread run first: its frame was queued before the request
    it answers, captured 10 us earlier on the other port. The pipeline must get the request first."""
    request, response = Frame(10.000010, 1, b"request", 7, 0), Frame(10.000020, 1, b"response", 8, 1)
    later = [Frame(10.5 + i / 100, 1, b"later", 5, i % 2) for i in range(3)]
    assert list(_queued([response, request, *later], ["tap-a", "tap-b"]).frames()) == [
        request,
        response,
        *later,
    ]


def test_one_interface_keeps_the_order_its_thread_read() -> None:
    frames = [Frame(10.2, 1, b"x", 1, 0), Frame(10.1, 1, b"y", 1, 0)]  # the pipeline clamps time instead
    assert list(_queued(frames, ["eth0"]).frames()) == frames


def test_frames_waiting_to_be_ordered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_module, "REORDER_MAX_FRAMES", 5)
    frames = [Frame(100.0 - i / 1000, 1, b"x", 1, i % 2) for i in range(20)]  # newest first, all within 50 ms
    source = _queued(frames, ["a", "b"])
    out = source.frames()
    first = next(out)
    assert source._queue.qsize() == 20 - 6  # released once a sixth was waiting, not at the end
    assert first == frames[5]  # the oldest of the six
    assert len([first, *out]) == 20
