"""A passive network TAP, simulated for live-capture tests (root): a capture's frames split by direction
onto two veth pairs, as a TAP's two monitor ports carry them (importable from any test).

A TAP copies what A sends to B out of one monitor port and what B sends to A out of the other, so a
sensor on one port alone sees half of every conversation. :func:`tap_sides` splits a capture that way;
:func:`send_as_tap` sends the frames in capture order from one process, each out of the sending end of
its side's veth pair, so that they arrive on the two capture ends in that order.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

CLIENT_TO_SERVER, SERVER_TO_CLIENT = 0, 1


def tap_sides(pcap: Path, server_port: int) -> list[tuple[int, bytes]]:
    """Each Ethernet/IPv4/TCP or UDP frame of ``pcap`` with its side: ``CLIENT_TO_SERVER`` when it goes to
    ``server_port``, ``SERVER_TO_CLIENT`` when it comes from it. A frame of neither fails the test."""
    from scapy.utils import RawPcapReader

    sides = []
    with RawPcapReader(str(pcap)) as reader:
        for data, _meta in reader:
            assert data[12:14] == b"\x08\x00", "an IPv4 frame"
            ihl = (data[14] & 0x0F) * 4
            sport, dport = struct.unpack_from(">HH", data, 14 + ihl)
            if dport == server_port:
                sides.append((CLIENT_TO_SERVER, bytes(data)))
            elif sport == server_port:
                sides.append((SERVER_TO_CLIENT, bytes(data)))
            else:
                raise AssertionError(f"frame of neither side: {sport} -> {dport}")
    return sides


@contextlib.contextmanager
def raw_senders(interfaces: Sequence[str]) -> Iterator[list[socket.socket]]:
    """One AF_PACKET socket bound to each interface, to send whole Ethernet frames out of it."""
    senders = []
    try:
        for name in interfaces:
            sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            senders.append(sender)
            sender.bind((name, 0))
        yield senders
    finally:
        for sender in senders:
            sender.close()


def send_as_tap(
    frames: Sequence[tuple[int, bytes]],
    send_ends: Sequence[str],
    pause: float = 0.0,
    after_each: Callable[[int], None] | None = None,
) -> None:
    """Send each frame out of ``send_ends[side]``, in order; then sleep ``pause`` seconds and call
    ``after_each(number of frames sent so far)`` (a test waits there until the frame was captured)."""
    with raw_senders(send_ends) as senders:
        for sent, (side, data) in enumerate(frames, start=1):
            senders[side].send(data)
            if pause:
                time.sleep(pause)
            if after_each is not None:
                after_each(sent)
