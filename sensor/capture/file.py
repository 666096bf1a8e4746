"""Capture files: classic pcap, pcapng and gzip-compressed variants of both, read as a stream.

The format is sniffed from the first bytes, never from the file name. Records are read from
large buffered chunks with ``struct.Struct.unpack_from``; a record's length is checked against
``Limits.max_record_bytes`` before any bytes are sliced for it, so a hostile length never
allocates (hostile inputs P3/P4). Gzip input is decompressed incrementally with a bounded output
per read, so a compressed file is never inflated into memory.

Classic pcap (draft-ietf-opsawg-pcap §4, §5)::

    global header, 24 bytes                      record header, 16 bytes
    +-------+-------+-------+----------+         +---------+----------+--------+---------+
    | magic | major | minor | reserved |         | ts_sec  | ts_frac  | caplen | origlen |
    |  u32  |  u16  |  u16  | 2 x u32  |         |  u32    | u32 us/ns|  u32   |   u32   |
    +-------+-------+-------+----------+         +---------+----------+--------+---------+
    | snaplen u32   | linktype u32     |         followed by caplen bytes of frame
    +---------------+------------------+

    magic a1b2c3d4 = microseconds, a1b23c4d = nanoseconds; its byte order is the file's.

pcapng (draft-ietf-opsawg-pcapng §3, §4): a sequence of blocks, each framed as::

    +-------------+------------------------+--------------+-------------------------+
    | type u32    | block_total_length u32 | body ...     | block_total_length u32  |
    +-------------+------------------------+--------------+-------------------------+

Blocks read here: Section Header (0x0A0D0D0A, §4.1, byte-order magic 0x1A2B3C4D sets the
section's byte order), Interface Description (1, §4.2; options if_tsresol §4.2 code 9 and
if_tsoffset code 14), Enhanced Packet (6, §4.3), Simple Packet (3, §4.4) and the obsolete
Packet Block (2, Appendix). Every other block (Name Resolution, Interface Statistics,
Decryption Secrets, custom, unknown) is skipped after its framing is checked.

Failure policy, shared by both formats:

- a file that ends inside a record: the frames before it are yielded, ``truncated_records`` is
  set and a warning added; no exception (hostile input P2);
- a record whose length is impossible (caplen above the limit or above its block, a block length
  below 12, not a multiple of 4, or whose trailing copy differs, a bad byte-order magic):
  ``corrupt_records`` is set and :class:`CaptureError` raised after every earlier frame was
  yielded (P3/P4). Reading stops there: a length field that lies leaves no trustworthy way to
  find the next record;
- a record whose caplen exceeds the declared snaplen but stays within the limit is accepted and
  counted in ``records_over_snaplen`` (some writers record a small snaplen and longer frames);
- timestamps are passed through as written (P5); the pipeline decides what to do with time going
  backwards.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable, Iterator
from io import FileIO
from pathlib import Path
from typing import Final, Protocol

from sensor.capture.base import Source
from sensor.errors import CaptureError
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import Frame

log = logging.getLogger(__name__)

# LINKTYPE_* values (tcpdump.org link-layer header types) that sensor/decode.py understands.
LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276
SUPPORTED_LINKTYPES: Final = frozenset(
    {
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
    }
)

READ_CHUNK: Final = 1 << 20  # bytes per read: large enough that per-read overhead disappears
_GZIP_INPUT_CHUNK: Final = 256 * 1024
MAX_WARNINGS: Final = 20  # a fuzzed file must not grow the warning list without bound
# Room for a packet block's fixed fields and options on top of the captured bytes.
PCAPNG_BLOCK_OVERHEAD: Final = 64 * 1024

PCAP_HEADER_LEN: Final = 24
PCAP_RECORD_HEADER_LEN: Final = 16
_PCAP_MAGICS: Final = {
    # first four bytes as stored -> (byte order, fraction units per second)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_GZIP_MAGIC: Final = b"\x1f\x8b"

PCAPNG_SHB: Final = 0x0A0D0D0A
PCAPNG_IDB: Final = 0x00000001
PCAPNG_OBSOLETE_PB: Final = 0x00000002
PCAPNG_SPB: Final = 0x00000003
PCAPNG_EPB: Final = 0x00000006
PCAPNG_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
_PCAPNG_SHB_BYTES: Final = b"\x0a\x0d\x0d\x0a"
_OPT_ENDOFOPT: Final = 0
_OPT_IF_TSRESOL: Final = 9
_OPT_IF_TSOFFSET: Final = 14
_PCAPNG_DEFAULT_TS_DIVISOR: Final = 1_000_000  # if_tsresol absent: microseconds (§4.2)
_PARSED_BLOCKS: Final = frozenset({PCAPNG_SHB, PCAPNG_IDB, PCAPNG_EPB, PCAPNG_SPB, PCAPNG_OBSOLETE_PB})
_NO_SNAPLEN: Final = 1 << 62  # stands for an interface snaplen of 0, "no limit"

# Frames are built with tuple.__new__: NamedTuple's generated __new__ costs a Python call per
# record, and this is the hottest line of the sensor.
_new_frame: Callable[[type[Frame], tuple[float, int, bytes, int, int]], Frame] = tuple.__new__


class _ByteStream(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


class _Interface:
    """One pcapng interface: how to turn its packet blocks into frames."""

    __slots__ = ("divisor", "frame_interface", "linktype", "snaplen", "ts_offset")

    def __init__(self, linktype: int, snaplen: int, divisor: int, ts_offset: int, frame_interface: int):
        self.linktype = linktype
        self.snaplen = snaplen
        self.divisor = divisor  # timestamp units per second (if_tsresol)
        self.ts_offset = ts_offset  # seconds added to every timestamp (if_tsoffset)
        self.frame_interface = frame_interface  # file-wide interface number given to Frame


class _GzipStream:
    """Incremental gzip decompression (RFC 1952), multi-member, bounded output per read.

    A stream cut short simply ends; ``truncated`` tells so. Corrupt deflate data raises
    ``zlib.error``; bytes after the last member that are not another member are ignored and
    noted in ``trailing_garbage``.
    """

    def __init__(self, raw: _ByteStream) -> None:
        self._raw = raw
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._input = b""
        self._member_started = False
        self._finished = False
        self.truncated = False
        self.trailing_garbage = False

    def read(self, size: int, /) -> bytes:
        parts: list[bytes] = []
        have = 0
        while have < size and not self._finished:
            if not self._input:
                self._input = self._raw.read(_GZIP_INPUT_CHUNK)
                if not self._input:
                    self._finished = True
                    self.truncated = self._member_started
                    break
            if not self._member_started and not self._input.startswith(_GZIP_MAGIC[: len(self._input)]):
                # After a complete member: zero padding or junk, not another member.
                self.trailing_garbage = any(self._input)
                self._finished = True
                break
            out = self._inflater.decompress(self._input, size - have)
            self._member_started = True
            self._input = self._inflater.unconsumed_tail
            if self._inflater.eof:
                self._input = self._inflater.unused_data
                self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._member_started = False
            if out:
                parts.append(out)
                have += len(out)
        return b"".join(parts)

    def close(self) -> None:
        self._raw.close()


def open_capture(path: str | Path, limits: Limits = DEFAULT_LIMITS) -> FileSource:
    """Open a capture file of any supported format; the header is checked before this returns.

    Raises :class:`CaptureError` with a one-line message when the file cannot be opened, is not a
    capture, is too short for its header, or (pcap, or the first pcapng interfaces) has a link type
    the decoder does not support.
    """
    name = str(path)
    try:
        raw: _ByteStream = FileIO(name, "rb")
    except OSError as exc:
        raise CaptureError(f"{name}: cannot open: {exc.strerror or exc}") from None
    try:
        return FileSource(name, raw, limits)
    except BaseException:
        raw.close()
        raise


class FileSource(Source):
    """Frames of one capture file, in file order. Use :func:`open_capture` to make one.

    Counters are exact once ``frames()`` has finished or been closed; while it runs, ``packets``
    and ``bytes`` lag by at most one read chunk (they are flushed per chunk, not per record).
    """

    def __init__(self, path: str, raw: _ByteStream, limits: Limits = DEFAULT_LIMITS) -> None:
        super().__init__()
        self.path = path
        self.limits = limits
        self._stream: _ByteStream = raw
        self._gzip: _GzipStream | None = None
        self._consumed = False
        head = self._read(READ_CHUNK)
        if head.startswith(_GZIP_MAGIC):
            self._gzip = _GzipStream(_PrefixedStream(head, raw))
            self._stream = self._gzip
            head = self._read(READ_CHUNK)
        self._head = head
        self.format: str
        self.linktype: int | None = None  # pcap only; pcapng carries one per interface
        if len(head) < 4:
            raise CaptureError(f"{path}: file too short")
        magic = head[:4]
        if magic in _PCAP_MAGICS:
            self._open_pcap(head)
        elif magic == _PCAPNG_SHB_BYTES:
            self._open_pcapng(head)
        else:
            raise CaptureError(f"{path}: not a pcap or pcapng file")

    # --- common --------------------------------------------------------------------------------

    def _read(self, size: int) -> bytes:
        try:
            return self._stream.read(size)
        except zlib.error as exc:
            self.counters.corrupt_records += 1
            raise CaptureError(f"{self.path}: corrupt gzip data: {exc}") from None
        except (OSError, EOFError) as exc:
            raise CaptureError(f"{self.path}: read error: {exc}") from None

    def _refill(self, buf: bytes, pos: int, need: int) -> bytes:
        """Return ``buf[pos:]`` extended by reads until it holds ``need`` bytes or the input ends."""
        parts = [buf[pos:]]
        have = len(parts[0])
        while have < need:
            # Never ask for more than a chunk: FileIO.read(n) allocates n bytes up front, and
            # ``need`` comes from a length field that the file may lie about.
            chunk = self._read(READ_CHUNK)
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts)

    def _warn(self, message: str) -> None:
        if len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(message)
            log.debug("%s", message)  # the caller reports warnings; logging them too would repeat them
        elif len(self.warnings) == MAX_WARNINGS:
            self.warnings.append(f"{self.path}: further warnings suppressed")

    def _where(self, offset: int) -> str:
        return f"uncompressed offset {offset}" if self._gzip is not None else f"offset {offset}"

    def _corrupt(self, offset: int, why: str) -> CaptureError:
        self.counters.corrupt_records += 1
        return CaptureError(f"{self.path}: corrupt record at {self._where(offset)}: {why}")

    def _truncated(self, offset: int, have: int, need: int) -> None:
        self.counters.truncated_records += 1
        self._warn(f"{self.path}: last record truncated at {self._where(offset)} ({have} of {need} bytes)")

    def _check_gzip_end(self) -> None:
        if self._gzip is None:
            return
        if self._gzip.truncated and not self.counters.truncated_records:
            self.counters.truncated_records += 1
            self._warn(f"{self.path}: compressed stream ends early")
        if self._gzip.trailing_garbage:
            self._warn(f"{self.path}: bytes after the end of the compressed stream ignored")

    def frames(self) -> Iterator[Frame]:
        if self._consumed:
            raise RuntimeError("FileSource.frames() can be iterated only once")
        self._consumed = True
        if self.format == "pcap":
            return self._pcap_frames()
        return self._pcapng_frames()

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- classic pcap --------------------------------------------------------------------------

    def _open_pcap(self, head: bytes) -> None:
        if len(head) < PCAP_HEADER_LEN:
            raise CaptureError(f"{self.path}: file too short")
        order, units = _PCAP_MAGICS[head[:4]]
        snaplen, network = struct.unpack_from(order + "II", head, 16)
        # The upper bits of the link-type field carry FCS information (draft-ietf-opsawg-pcap §4).
        linktype = network & 0xFFFF
        if linktype not in SUPPORTED_LINKTYPES:
            raise CaptureError(f"{self.path}: unsupported link type {linktype}")
        self.format = "pcap"
        self.linktype = linktype
        self._order = order
        self._units = units
        self._snaplen = snaplen

    def _pcap_frames(self) -> Iterator[Frame]:
        unpack_header = struct.Struct(self._order + "IIII").unpack_from
        limit = self.limits.max_record_bytes
        # snaplen 0 (seen from some writers) means "not stated"; never count against it.
        snaplen = self._snaplen or limit
        linktype = self.linktype
        assert linktype is not None
        units = self._units
        counters = self.counters
        buf = self._head
        self._head = b""
        base = 0  # file (or uncompressed) offset of buf[0]
        pos = PCAP_HEADER_LEN
        packets = 0  # frames yielded but not yet added to the counters
        flushed_pos = pos
        over_snaplen = 0
        try:
            while True:
                end = len(buf)
                while pos + PCAP_RECORD_HEADER_LEN <= end:
                    sec, frac, caplen, wire_len = unpack_header(buf, pos)
                    if caplen > limit:
                        raise self._corrupt(base + pos, f"captured length {caplen} exceeds the limit {limit}")
                    start = pos + PCAP_RECORD_HEADER_LEN
                    nxt = start + caplen
                    if nxt > end:
                        break
                    if caplen > snaplen:
                        over_snaplen += 1
                    packets += 1
                    yield _new_frame(Frame, (sec + frac / units, linktype, buf[start:nxt], wire_len, 0))
                    pos = nxt
                counters.packets += packets
                counters.bytes += pos - flushed_pos - PCAP_RECORD_HEADER_LEN * packets
                packets = 0
                base += pos
                if pos + PCAP_RECORD_HEADER_LEN <= end:
                    need = PCAP_RECORD_HEADER_LEN + unpack_header(buf, pos)[2]
                else:
                    need = PCAP_RECORD_HEADER_LEN
                buf = self._refill(buf, pos, need)
                pos = flushed_pos = 0
                if len(buf) < need:
                    if buf:
                        if len(buf) >= PCAP_RECORD_HEADER_LEN:
                            need = PCAP_RECORD_HEADER_LEN + unpack_header(buf, 0)[2]
                        self._truncated(base, len(buf), need)
                    self._check_gzip_end()
                    return
        finally:
            counters.packets += packets
            counters.bytes += pos - flushed_pos - PCAP_RECORD_HEADER_LEN * packets
            counters.records_over_snaplen += over_snaplen
            self.close()

    # --- pcapng --------------------------------------------------------------------------------

    def _open_pcapng(self, head: bytes) -> None:
        if len(head) < 28:
            raise CaptureError(f"{self.path}: file too short")
        order = self._section_byte_order(head, 0, 0)
        (length,) = struct.unpack_from(order + "I", head, 4)
        if 28 <= length <= self.limits.max_record_bytes + PCAPNG_BLOCK_OVERHEAD and len(head) < length:
            head = self._refill(head, 0, length)
            if len(head) < length:
                raise CaptureError(f"{self.path}: file too short")
        self._head = head
        self.format = "pcapng"
        self._prescan_interfaces(head, order)

    def _section_byte_order(self, buf: bytes, pos: int, offset: int) -> str:
        """Byte order of the section whose header block starts at ``pos`` (§4.1)."""
        (magic,) = struct.unpack_from("<I", buf, pos + 8)
        if magic == PCAPNG_BYTE_ORDER_MAGIC:
            return "<"
        if magic == 0x4D3C2B1A:
            return ">"
        raise self._corrupt(offset, f"section header byte-order magic {magic:#010x}")

    def _prescan_interfaces(self, head: bytes, order: str) -> None:
        """Fail at open on an unsupported link type among the interfaces right after the first
        section header, the common single-interface case; a later one fails when reached."""
        block = struct.Struct(order + "II").unpack_from
        (pos,) = struct.unpack_from(order + "I", head, 4)
        while pos + 12 <= len(head):
            block_type, length = block(head, pos)
            if block_type != PCAPNG_IDB or length < 20 or length % 4:
                return
            (linktype,) = struct.unpack_from(order + "H", head, pos + 8)
            if linktype not in SUPPORTED_LINKTYPES:
                raise CaptureError(f"{self.path}: unsupported link type {linktype}")
            pos += length

    def _parse_options(self, buf: bytes, pos: int, end: int, order: str) -> dict[int, bytes]:
        """Options of a block (§3.5): code u16, length u16, value padded to 4 bytes; first wins."""
        header = struct.Struct(order + "HH").unpack_from
        options: dict[int, bytes] = {}
        while pos + 4 <= end:
            code, length = header(buf, pos)
            if code == _OPT_ENDOFOPT:
                break
            value_end = pos + 4 + length
            if value_end > end:
                self._warn(f"{self.path}: option {code} runs past its block; remaining options ignored")
                break
            options.setdefault(code, buf[pos + 4 : value_end])
            pos = value_end + (-length & 3)
        return options

    def _interface_from_idb(
        self, buf: bytes, pos: int, length: int, order: str, offset: int, frame_interface: int
    ) -> _Interface:
        """Interface Description Block (§4.2)::

        | type=1 | length | linktype u16 | reserved u16 | snaplen u32 | options ... | length |
        """
        if length < 20:
            raise self._corrupt(offset, f"interface description block of {length} bytes")
        linktype, _reserved, snaplen = struct.unpack_from(order + "HHI", buf, pos + 8)
        if linktype not in SUPPORTED_LINKTYPES:
            raise CaptureError(f"{self.path}: unsupported link type {linktype}")
        options = self._parse_options(buf, pos + 16, pos + length - 4, order)
        divisor = _PCAPNG_DEFAULT_TS_DIVISOR
        tsresol = options.get(_OPT_IF_TSRESOL)
        if tsresol:
            # MSB clear: units of 10^-n s; MSB set: units of 2^-n s (§4.2, if_tsresol).
            exponent = tsresol[0] & 0x7F
            divisor = 2**exponent if tsresol[0] & 0x80 else 10**exponent
        ts_offset = 0
        tsoffset = options.get(_OPT_IF_TSOFFSET)
        if tsoffset is not None and len(tsoffset) == 8:
            (ts_offset,) = struct.unpack(order + "q", tsoffset)
        # snaplen 0 means "no limit" (§4.2).
        return _Interface(linktype, snaplen or _NO_SNAPLEN, divisor, ts_offset, frame_interface)

    def _pcapng_frames(self) -> Iterator[Frame]:
        limit = self.limits.max_record_bytes
        max_block = limit + PCAPNG_BLOCK_OVERHEAD
        counters = self.counters
        buf = self._head
        self._head = b""
        base = 0  # file (or uncompressed) offset of buf[0]
        pos = 0
        packets = 0  # frames of the fast path not yet added to the counters
        captured = 0
        over_snaplen = 0
        interfaces: list[_Interface] = []
        # The fast path reads interfaces as plain tuples, one unpacking per packet.
        fast_interfaces: list[tuple[int, int, float, int, int]] = []
        interface_ids = 0
        interface_count = 0  # file-wide, so the interfaces of a later section get new numbers
        order = "<"
        block = struct.Struct("<II").unpack_from
        epb = struct.Struct("<IIIIIII").unpack_from
        u32 = struct.Struct("<I").unpack_from
        try:
            while True:
                end = len(buf)
                # Fast path: complete, well-formed Enhanced Packet Blocks (§4.3)::
                #   | type=6 | length | interface u32 | ts high u32 | ts low u32 | caplen u32 |
                #   | origlen u32 | data, padded to 4 | options ... | length |
                while pos + 28 <= end:
                    block_type, length, iface_id, ts_high, ts_low, caplen, wire_len = epb(buf, pos)
                    nxt = pos + length
                    if (
                        block_type != PCAPNG_EPB
                        or nxt > end
                        or length > max_block
                        or length & 3
                        or caplen > length - 32
                        or caplen > limit
                        or iface_id >= interface_ids
                        or u32(buf, nxt - 4)[0] != length
                    ):
                        break
                    linktype, snaplen, divisor, ts_offset, frame_interface = fast_interfaces[iface_id]
                    if caplen > snaplen:
                        over_snaplen += 1
                    packets += 1
                    captured += caplen
                    data_start = pos + 28
                    yield _new_frame(
                        Frame,
                        (
                            (ts_high * 4294967296.0 + ts_low) / divisor + ts_offset,
                            linktype,
                            buf[data_start : data_start + caplen],
                            wire_len,
                            frame_interface,
                        ),
                    )
                    pos = nxt
                counters.packets += packets
                counters.bytes += captured
                packets = captured = 0

                # Slow path: one block of any kind, every check made, refilling as needed.
                if pos + 12 > end:
                    base += pos
                    buf = self._refill(buf, pos, 12)
                    pos = 0
                    end = len(buf)
                    if end < 12:
                        if end:
                            self._truncated(base, end, 12)
                        self._check_gzip_end()
                        return
                offset = base + pos
                if buf[pos : pos + 4] == _PCAPNG_SHB_BYTES:
                    order = self._section_byte_order(buf, pos, offset)
                    block = struct.Struct(order + "II").unpack_from
                    epb = struct.Struct(order + "IIIIIII").unpack_from
                    u32 = struct.Struct(order + "I").unpack_from
                block_type, length = block(buf, pos)
                if length < 12 or length & 3:
                    raise self._corrupt(offset, f"block length {length}")
                parsed = block_type in _PARSED_BLOCKS
                if parsed and length > max_block:
                    raise self._corrupt(offset, f"block length {length} exceeds the limit {max_block}")
                if pos + length > end:
                    if not parsed and length > max_block and pos + length - 4 >= end:
                        # A huge block we do not read (say, decryption secrets): stream past its
                        # body instead of buffering it, then check its trailing length.
                        remaining = pos + length - 4 - end
                        base += end
                        buf = b""
                        pos = 0
                        while remaining:
                            chunk = self._read(min(READ_CHUNK, remaining))
                            if not chunk:
                                self._truncated(offset, length - 4 - remaining, length)
                                self._check_gzip_end()
                                return
                            remaining -= len(chunk)
                            base += len(chunk)
                        buf = self._refill(b"", 0, 4)
                        if len(buf) < 4:
                            self._truncated(offset, length - 4 + len(buf), length)
                            self._check_gzip_end()
                            return
                        (trailer,) = u32(buf, 0)
                        if trailer != length:
                            raise self._corrupt(offset, f"trailing block length {trailer} != {length}")
                        pos = 4
                        continue
                    base += pos
                    buf = self._refill(buf, pos, length)
                    pos = 0
                    end = len(buf)
                    if end < length:
                        self._truncated(base, end, length)
                        self._check_gzip_end()
                        return
                nxt = pos + length
                (trailer,) = u32(buf, nxt - 4)
                if trailer != length:
                    raise self._corrupt(offset, f"trailing block length {trailer} != {length}")
                if block_type == PCAPNG_SHB:
                    if length < 28:
                        raise self._corrupt(offset, f"section header block of {length} bytes")
                    (major,) = struct.unpack_from(order + "H", buf, pos + 12)
                    if major != 1:
                        raise self._corrupt(offset, f"pcapng major version {major}")
                    interfaces = []  # interface ids are per section (§4.1)
                    fast_interfaces = []
                    interface_ids = 0
                elif block_type == PCAPNG_IDB:
                    iface = self._interface_from_idb(buf, pos, length, order, offset, interface_count)
                    interfaces.append(iface)
                    divisor = float(iface.divisor)
                    fast_interfaces.append(
                        (iface.linktype, iface.snaplen, divisor, iface.ts_offset, iface.frame_interface)
                    )
                    interface_ids += 1
                    interface_count += 1
                elif parsed:
                    frame = self._packet_from_block(buf, pos, length, block_type, order, interfaces, offset)
                    counters.packets += 1
                    counters.bytes += len(frame.data)
                    yield frame
                pos = nxt
        finally:
            counters.packets += packets
            counters.bytes += captured
            counters.records_over_snaplen += over_snaplen
            self.close()

    def _packet_from_block(
        self,
        buf: bytes,
        pos: int,
        length: int,
        block_type: int,
        order: str,
        interfaces: list[_Interface],
        offset: int,
    ) -> Frame:
        """A frame from an Enhanced (§4.3), Simple (§4.4) or obsolete Packet Block (Appendix A)."""
        limit = self.limits.max_record_bytes
        if block_type == PCAPNG_SPB:
            # | type=3 | length | origlen u32 | data, padded | length |: interface 0, no timestamp,
            # captured length implied by the block and the interface's snaplen.
            if length < 16:
                raise self._corrupt(offset, f"simple packet block of {length} bytes")
            if not interfaces:
                raise self._corrupt(offset, "packet block before any interface description")
            iface = interfaces[0]
            (wire_len,) = struct.unpack_from(order + "I", buf, pos + 8)
            caplen = min(wire_len, length - 16, iface.snaplen)
            data_start = pos + 12
            ts = 0.0
        else:
            if length < 32:
                raise self._corrupt(offset, f"packet block of {length} bytes")
            if block_type == PCAPNG_EPB:
                iface_id, ts_high, ts_low, caplen, wire_len = struct.unpack_from(
                    order + "IIIII", buf, pos + 8
                )
            else:
                # | type=2 | length | interface u16 | drops u16 | ts high | ts low | caplen | len | ...
                iface_id, _drops, ts_high, ts_low, caplen, wire_len = struct.unpack_from(
                    order + "HHIIII", buf, pos + 8
                )
            if caplen > length - 32:
                raise self._corrupt(offset, f"captured length {caplen} exceeds its block of {length} bytes")
            if iface_id >= len(interfaces):
                raise self._corrupt(offset, f"packet for undeclared interface {iface_id}")
            iface = interfaces[iface_id]
            data_start = pos + 28
            ts = ((ts_high << 32) | ts_low) / iface.divisor + iface.ts_offset
        if caplen > limit:
            raise self._corrupt(offset, f"captured length {caplen} exceeds the limit {limit}")
        if caplen > iface.snaplen:
            self.counters.records_over_snaplen += 1
        data = buf[data_start : data_start + caplen]
        return _new_frame(Frame, (ts, iface.linktype, data, wire_len, iface.frame_interface))


class _PrefixedStream:
    """A stream that first returns bytes already read from it (the sniffed head)."""

    def __init__(self, prefix: bytes, raw: _ByteStream) -> None:
        self._prefix = prefix
        self._raw = raw

    def read(self, size: int, /) -> bytes:
        if self._prefix:
            out, self._prefix = self._prefix[:size], self._prefix[size:]
            return out
        return self._raw.read(size)

    def close(self) -> None:
        self._raw.close()
