"""Live capture from SPAN/mirror ports or a TAP's monitor ports, listen-only (DESIGN.md §1: concurrency
lives at the edges).

One capture thread per interface reads raw frames from a Linux ``AF_PACKET`` socket opened through
scapy's ``L2ListenSocket`` (bytes only: no per-packet scapy dissection) and pushes them into the one
bounded queue all threads share; the pipeline drains it through :meth:`LiveSource.frames`. When the
pipeline falls behind, the newest frame is dropped and counted in ``queue_drops``: capture never
blocks on the pipeline, so the kernel rings keep draining and the sensor's memory stays bounded, by
frames (``Limits.capture_queue_frames``) and by bytes (``Limits.capture_queue_bytes``: a frame the kernel
hands over can be 64 KiB).

Several interfaces are for a passive TAP, whose two monitor ports each carry one direction of every
conversation (A->B on one, B->A on the other), or for SPAN sessions of several switches: one sensor
sees both halves and pairs requests with responses. Each frame carries the index of its interface in
``Frame.interface``. Frames enter the queue in the order their threads happened to run, so a response
read on one port can come before the request it answers, read on the other a few microseconds
earlier. With several interfaces :meth:`LiveSource.frames` therefore hands frames over in the order of
their kernel timestamps: each waits until a frame ``REORDER_WINDOW`` seconds newer has arrived (or
``REORDER_MAX_FRAMES`` are waiting, or the capture goes quiet for ``RECEIVE_TIMEOUT``).

Each thread writes only its own interface's :class:`CaptureCounters` (an ``+=`` on a counter another
thread also writes would lose increments); :attr:`LiveSource.counters` is their sum, read at the time
it is asked, and :meth:`LiveSource.counters_by_interface` gives them one by one.

The sockets never transmit: ``L2ListenSocket`` has no output socket and refuses ``send``, and
nothing here writes to them. Promiscuous mode is a packet-socket membership
(``PACKET_MR_PROMISC``), dropped again when the socket closes. The BPF filter is compiled by
libpcap (through scapy) and attached to each socket, so filtered frames never reach Python.

Kernel drops come from ``getsockopt(SOL_PACKET, PACKET_STATISTICS)`` (packet(7)), which returns
``struct tpacket_stats { u32 tp_packets; u32 tp_drops; }`` and resets it on every read, so the
drops are summed here.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Final

from sensor.capture.base import CaptureCounters, Source
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
# Several interfaces: how long (packet time) a frame waits for older frames of the other interfaces, and
# at most how many wait. Their threads queue a frame within a scheduler's time slice of its capture.
REORDER_WINDOW: Final = 0.05
REORDER_MAX_FRAMES: Final = 10_000


class _NoLinkLayerGuessWarning(logging.Filter):
    """Drops scapy's "Unable to guess type (interface=...)" warning, printed on stderr for every socket
    opened while scapy's layers are not imported (they are not: frames are read as bytes, and scapy's
    guess of a layer class is never used). An error at start stays the one line the CLI prints."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Unable to guess type" not in str(record.msg)


_NO_LINK_LAYER_GUESS_WARNING: Final = _NoLinkLayerGuessWarning()


class LiveSource(Source):
    """Frames captured on one interface or several; call :meth:`start`, iterate :meth:`frames`, then
    :meth:`stop`.

    ``interfaces``: a name (``"eth0"``) or names (``["eth1", "eth2"]``, a TAP's two monitor ports).
    A name given twice is one interface: capturing it twice would hand every frame over twice (seen
    as retransmissions), so the repeat is dropped with a warning. ``Frame.interface`` is the index of
    the frame's interface in :attr:`interfaces`.

    ``counters.packets``/``bytes`` count every frame received from the kernel, including those
    then dropped because the queue was full (``queue_drops``). ``wire_len`` equals the captured
    length: the packet socket does not report the original length of a frame cut at ``snaplen``.
    """

    def __init__(
        self,
        interfaces: str | Sequence[str],
        bpf: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        snaplen: int = 65535,
    ) -> None:
        # Source.__init__ is not called: it would assign ``counters``, which here is the sum of the
        # per-interface counters (a property), not a counter object of its own.
        self.warnings: list[str] = []
        names = [interfaces] if isinstance(interfaces, str) else list(interfaces)
        unique = tuple(dict.fromkeys(names))
        if not unique or not all(unique):
            raise ValueError("LiveSource needs at least one interface name")
        if len(unique) < len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            message = f"interface given more than once, captured once: {', '.join(repeated)}"
            log.warning("%s", message)
            self.warnings.append(message)
        self.interfaces: tuple[str, ...] = unique
        self.interface = ",".join(unique)  # the names as one string, for messages
        self.bpf = bpf
        self.limits = limits
        self.snaplen = snaplen
        self.linktypes: dict[str, int] = {}  # per interface, once started
        self._counters = tuple(CaptureCounters() for _ in unique)  # each written by one thread only
        self._queue: queue.Queue[Frame] = queue.Queue(maxsize=max(1, limits.capture_queue_frames))
        # Bytes queued (or waiting to be put in order) = sum(put) - taken: each thread adds only to its
        # own slot and the consumer only to ``_bytes_taken``, so no count is written by two threads.
        self._bytes_put = [0] * len(unique)
        self._bytes_taken = 0
        self._stopping = threading.Event()
        self._finished = tuple(threading.Event() for _ in unique)
        self._threads: list[threading.Thread] = []
        self._error: str | None = None
        self._error_lock = threading.Lock()

    @property
    def counters(self) -> CaptureCounters:
        """The sum of every interface's counters, as they are now (a new object at each read)."""
        parts = [part.as_dict() for part in self._counters]
        return CaptureCounters(**{key: sum(part[key] for part in parts) for key in parts[0]})

    @counters.setter
    def counters(self, value: CaptureCounters) -> None:
        raise AttributeError("a live source's counters are the sum of its interfaces' counters")

    def counters_by_interface(self) -> dict[str, dict[str, int]]:
        """Each interface's counters, by name, in the order the interfaces were given."""
        return {name: part.as_dict() for name, part in zip(self.interfaces, self._counters, strict=True)}

    def start(self) -> None:
        """Open a listen-only socket (promiscuous, filtered) per interface, then start their capture
        threads. When one cannot be opened, those already opened are closed and nothing captures."""
        if self._threads:
            return
        try:
            from scapy.arch.linux import L2ListenSocket  # noqa: F401 - imported here: it may be missing
        except ImportError as exc:  # not Linux, or scapy missing
            raise CaptureError(f"{self.interface}: live capture unavailable: {exc}") from None
        opened: list[tuple[Any, int]] = []
        try:
            for name in self.interfaces:
                opened.append(self._open(name))
        except BaseException:
            for sock, _linktype in opened:
                with contextlib.suppress(Exception):
                    sock.close()
            raise
        for index, (name, (sock, linktype)) in enumerate(zip(self.interfaces, opened, strict=True)):
            self.linktypes[name] = linktype
            thread = threading.Thread(
                target=self._capture, args=(index, sock, linktype), name=f"capture-{name}", daemon=True
            )
            self._threads.append(thread)
        for thread, name in zip(self._threads, self.interfaces, strict=True):
            thread.start()
            log.info("capturing on %s (filter %r, linktype %d)", name, self.bpf, self.linktypes[name])

    def _open(self, name: str) -> tuple[Any, int]:
        """The listen-only socket on ``name`` (receive timeout set) and its frames' LINKTYPE."""
        from scapy.arch.linux import L2ListenSocket
        from scapy.error import Scapy_Exception

        self._refresh_scapy_interface(name)
        logging.getLogger("scapy.runtime").addFilter(_NO_LINK_LAYER_GUESS_WARNING)  # once: a set
        try:
            sock = L2ListenSocket(iface=name, promisc=True, filter=self.bpf)
        except (OSError, ValueError, Scapy_Exception) as exc:
            raise CaptureError(f"{name}: cannot capture: {_one_line(exc)}") from None
        hatype = sock.ins.getsockname()[3]
        linktype = _LINKTYPE_BY_ARPHRD.get(hatype)
        if linktype is None:
            sock.close()
            raise CaptureError(f"{name}: unsupported link type (ARPHRD {hatype})")
        sock.ins.settimeout(RECEIVE_TIMEOUT)
        return sock, linktype

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
        """Ask the capture threads to end; ``frames()`` finishes once the queue is drained."""
        self._stopping.set()

    def frames(self) -> Iterator[Frame]:
        """Queued frames until :meth:`stop` is called (or capture fails on an interface), every capture
        thread has ended and the queue is empty."""
        self.start()
        if len(self.interfaces) == 1:
            get = self._queue.get
            while True:
                try:
                    frame = get(timeout=RECEIVE_TIMEOUT)
                except queue.Empty:
                    if self._done():
                        break
                    continue
                self._bytes_taken += len(frame.data)
                yield frame
        else:
            yield from self._in_time_order()
        if self._error is not None:
            raise CaptureError(self._error)

    def _done(self) -> bool:
        return all(done.is_set() for done in self._finished) and self._queue.empty()

    def _in_time_order(self) -> Iterator[Frame]:
        """The queued frames of several interfaces in timestamp order (module docstring): a heap holds
        each until one ``REORDER_WINDOW`` newer has been queued; all go when the queue stays empty."""
        get = self._queue.get
        waiting: list[tuple[float, int, Frame]] = []  # (timestamp, arrival, frame): equal times keep order
        arrival = 0
        newest = float("-inf")
        while True:
            try:
                frame = get(timeout=RECEIVE_TIMEOUT)
            except queue.Empty:
                while waiting:
                    yield self._taken(heapq.heappop(waiting)[2])
                if self._done():
                    return
                continue
            arrival += 1
            heapq.heappush(waiting, (frame.ts, arrival, frame))
            newest = max(newest, frame.ts)
            while waiting and (waiting[0][0] <= newest - REORDER_WINDOW or len(waiting) > REORDER_MAX_FRAMES):
                yield self._taken(heapq.heappop(waiting)[2])

    def _taken(self, frame: Frame) -> Frame:
        """A frame leaves for the pipeline: its bytes no longer count against ``capture_queue_bytes`` (a
        frame waiting to be put in order still does)."""
        self._bytes_taken += len(frame.data)
        return frame

    def close(self) -> None:
        """Stop capturing and wait for the capture threads (each closes its socket)."""
        self.stop()
        for thread in self._threads:
            thread.join(timeout=5 * RECEIVE_TIMEOUT + 1.0)

    # --- capture threads -------------------------------------------------------------------------

    def _capture(self, index: int, sock: Any, linktype: int) -> None:
        """One interface's thread: receive, count in this interface's counters only, queue or drop."""
        name = self.interfaces[index]
        counters = self._counters[index]
        put = self._queue.put_nowait
        bytes_put, max_bytes = self._bytes_put, self.limits.capture_queue_bytes
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
                        self._fail(f"{name}: capture failed: {_one_line(exc)}")
                    break
                if data is not None:
                    size = len(data)
                    counters.packets += 1
                    counters.bytes += size
                    if sum(bytes_put) - self._bytes_taken + size > max_bytes:
                        counters.queue_drops += 1
                    else:
                        bytes_put[index] += size  # before the put: the consumer may take it at once
                        try:
                            put(Frame(ts if ts is not None else time.time(), linktype, data, size, index))
                        except queue.Full:
                            bytes_put[index] -= size
                            counters.queue_drops += 1
                now = time.monotonic()
                if now >= next_stats:
                    self._read_kernel_drops(sock, counters)
                    next_stats = now + STATS_INTERVAL
        finally:
            self._read_kernel_drops(sock, counters)
            with contextlib.suppress(Exception):
                sock.close()
            self._finished[index].set()

    def _fail(self, error: str) -> None:
        """Capture failed on one interface: the first error is kept and every thread ends, so that
        ``frames()`` raises it rather than go on seeing half of the traffic."""
        with self._error_lock:
            if self._error is None:
                self._error = error
        log.error("%s", error)
        self._stopping.set()

    def _read_kernel_drops(self, sock: Any, counters: CaptureCounters) -> None:
        """Add the kernel's drops on ``sock`` since the last read to ``counters`` (its interface's)."""
        try:
            raw_socket: socket.socket = sock.ins
            stats = raw_socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, _TPACKET_STATS.size)
        except (AttributeError, OSError, ValueError):
            return  # socket without a fileno (closed) or kernel without packet statistics
        _packets, drops = _TPACKET_STATS.unpack(stats)
        counters.kernel_drops += drops


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
