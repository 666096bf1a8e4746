"""Live capture from a SPAN/mirror port, listen-only (DESIGN.md §1: concurrency lives at the edges).

A capture thread reads raw frames from a Linux ``AF_PACKET`` socket opened through scapy's
``L2ListenSocket`` (bytes only: no per-packet scapy dissection) and pushes them into a bounded
queue; the pipeline drains the queue through :meth:`LiveSource.frames`. When the pipeline falls
behind, the newest frame is dropped and counted in ``queue_drops``: capture never blocks on the
pipeline, so the kernel ring keeps draining and the sensor's memory stays bounded.

The socket never transmits: ``L2ListenSocket`` has no output socket and refuses ``send``, and
nothing here writes to it. Promiscuous mode is a packet-socket membership
(``PACKET_MR_PROMISC``), dropped again when the socket closes. The BPF filter is compiled by
libpcap (through scapy) and attached to the socket, so filtered frames never reach Python.

Kernel drops come from ``getsockopt(SOL_PACKET, PACKET_STATISTICS)`` (packet(7)), which returns
``struct tpacket_stats { u32 tp_packets; u32 tp_drops; }`` and resets it on every read, so the
drops are summed here.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any, Final

from sensor.capture.base import Source
from sensor.errors import CaptureError
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import Frame

log = logging.getLogger(__name__)

SOL_PACKET: Final = 263
PACKET_STATISTICS: Final = 6
_TPACKET_STATS: Final = struct.Struct("II")  # tp_packets, tp_drops (native byte order)

# ARPHRD_* (linux/if_arp.h) of the capture interface -> LINKTYPE_* of the frames the packet
# socket returns. Loopback is Ethernet-framed on AF_PACKET; ARPHRD_NONE devices (tun, WireGuard)
# deliver bare IP packets.
_ARPHRD_ETHER: Final = 1
_ARPHRD_LOOPBACK: Final = 772
_ARPHRD_NONE: Final = 65534
_LINKTYPE_BY_ARPHRD: Final = {_ARPHRD_ETHER: 1, _ARPHRD_LOOPBACK: 1, _ARPHRD_NONE: 101}

RECEIVE_TIMEOUT: Final = 0.2  # seconds a receive waits, so stop() is noticed promptly
STATS_INTERVAL: Final = 1.0  # seconds between kernel-drop reads


class LiveSource(Source):
    """Frames captured on ``interface``; call :meth:`start`, iterate :meth:`frames`, then :meth:`stop`.

    ``counters.packets``/``bytes`` count every frame received from the kernel, including those
    then dropped because the queue was full (``queue_drops``). ``wire_len`` equals the captured
    length: the packet socket does not report the original length of a frame cut at ``snaplen``.
    """

    def __init__(
        self,
        interface: str,
        bpf: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        snaplen: int = 65535,
    ) -> None:
        super().__init__()
        self.interface = interface
        self.bpf = bpf
        self.limits = limits
        self.snaplen = snaplen
        self.linktype: int | None = None
        self._queue: queue.Queue[Frame] = queue.Queue(maxsize=max(1, limits.capture_queue_frames))
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: Any = None  # scapy L2ListenSocket
        self._error: str | None = None

    def start(self) -> None:
        """Open the listen-only socket (promiscuous, filtered) and start the capture thread."""
        if self._thread is not None:
            return
        try:
            from scapy.arch.linux import L2ListenSocket
            from scapy.error import Scapy_Exception
        except ImportError as exc:  # not Linux, or scapy missing
            raise CaptureError(f"{self.interface}: live capture unavailable: {exc}") from None
        self._refresh_scapy_interface(self.interface)
        try:
            sock = L2ListenSocket(iface=self.interface, promisc=True, filter=self.bpf)
        except (OSError, ValueError, Scapy_Exception) as exc:
            raise CaptureError(f"{self.interface}: cannot capture: {_one_line(exc)}") from None
        hatype = sock.ins.getsockname()[3]
        linktype = _LINKTYPE_BY_ARPHRD.get(hatype)
        if linktype is None:
            sock.close()
            raise CaptureError(f"{self.interface}: unsupported link type (ARPHRD {hatype})")
        sock.ins.settimeout(RECEIVE_TIMEOUT)
        self._socket = sock
        self.linktype = linktype
        self._thread = threading.Thread(
            target=self._capture, args=(sock, linktype), name=f"capture-{self.interface}", daemon=True
        )
        self._thread.start()
        log.info("capturing on %s (filter %r, linktype %d)", self.interface, self.bpf, linktype)

    @staticmethod
    def _refresh_scapy_interface(name: str) -> None:
        """Make scapy's interface cache agree with the kernel before it is used.

        scapy resolves the interface index for the promiscuous membership from a cache filled at
        import; an interface re-created since then (a replugged USB NIC, a rebuilt veth) keeps a
        stale index there and the socket would fail with "No such device".
        """
        from scapy.config import conf
        from scapy.interfaces import resolve_iface

        try:
            index = socket.if_nametoindex(name)
        except OSError as exc:
            raise CaptureError(f"{name}: cannot capture: {_one_line(exc)}") from None
        try:
            cached = resolve_iface(name).index
        except ValueError:
            cached = None
        if cached != index:
            conf.ifaces.reload()

    def stop(self) -> None:
        """Ask the capture thread to end; ``frames()`` finishes once the queue is drained."""
        self._stopping.set()

    def frames(self) -> Iterator[Frame]:
        """Queued frames until :meth:`stop` is called (or capture fails) and the queue is empty."""
        self.start()
        get = self._queue.get
        while True:
            try:
                yield get(timeout=RECEIVE_TIMEOUT)
            except queue.Empty:
                if self._finished.is_set() and self._queue.empty():
                    break
        if self._error is not None:
            raise CaptureError(self._error)

    def close(self) -> None:
        """Stop capturing and wait for the capture thread (it closes the socket)."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=5 * RECEIVE_TIMEOUT + 1.0)

    # --- capture thread ------------------------------------------------------------------------

    def _capture(self, sock: Any, linktype: int) -> None:
        counters = self.counters
        put = self._queue.put_nowait
        recv_raw = sock.recv_raw
        snaplen = self.snaplen
        stopping = self._stopping
        next_stats = time.monotonic() + STATS_INTERVAL
        try:
            while not stopping.is_set():
                try:
                    _, data, ts = recv_raw(snaplen)
                except TimeoutError:
                    data = None
                except OSError as exc:
                    if not stopping.is_set():
                        self._error = f"{self.interface}: capture failed: {_one_line(exc)}"
                        log.error("%s", self._error)
                    break
                if data is not None:
                    counters.packets += 1
                    counters.bytes += len(data)
                    try:
                        put(Frame(ts if ts is not None else time.time(), linktype, data, len(data), 0))
                    except queue.Full:
                        counters.queue_drops += 1
                now = time.monotonic()
                if now >= next_stats:
                    self._read_kernel_drops(sock)
                    next_stats = now + STATS_INTERVAL
        finally:
            self._read_kernel_drops(sock)
            with contextlib.suppress(Exception):
                sock.close()
            self._finished.set()

    def _read_kernel_drops(self, sock: Any) -> None:
        try:
            raw_socket: socket.socket = sock.ins
            stats = raw_socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
        except (AttributeError, OSError, ValueError):
            return  # socket without a fileno (closed) or kernel without packet statistics
        _packets, drops = _TPACKET_STATS.unpack(stats)
        self.counters.kernel_drops += drops


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
