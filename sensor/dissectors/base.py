"""The dissector contract (DESIGN.md §3).

A dissector is three things:

* a :class:`Dissector` (one instance per sensor): its protocol id, the ports it is usually found on,
  a content ``probe`` for detection, and a factory for sessions and for summary statistics;
* a :class:`DissectorSession` (one per flow): keeps per-direction buffers and protocol state and
  turns stream bytes into events. ``feed``/``gap``/``close`` never raise on wire input: malformed
  bytes become a :class:`~sensor.records.ProtocolAnomaly` and the session resyncs;
* pure parse functions in ``frames.py`` that read through a :class:`Reader` and raise only
  :class:`~sensor.errors.Truncated` or :class:`~sensor.errors.Malformed`.

Plus :class:`ProtocolStats`, which folds the dissector's events into its section of the replay
summary (``zonewarden replay --summary-json``).
"""

from __future__ import annotations

import builtins
import enum
import struct
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from sensor.errors import Malformed, Truncated
from sensor.limits import Limits
from sensor.records import AppEvent, FlowRef

_U16BE = struct.Struct(">H")
_U32BE = struct.Struct(">I")
_U16LE = struct.Struct("<H")
_U32LE = struct.Struct("<I")
_I32LE = struct.Struct("<i")
_U64LE = struct.Struct("<Q")
_I64LE = struct.Struct("<q")
_I16LE = struct.Struct("<h")
_F32LE = struct.Struct("<f")
_F64LE = struct.Struct("<d")


class Reader:
    """Bounds-checked cursor over a byte buffer: the only way parsers read wire bytes.

    Every read checks the bytes left and raises :class:`Truncated` when they are not there, so a
    parser never slices past the end or builds a huge object from a length field. ``end`` limits
    the reader to a sub-range (e.g. one PDU) of a larger buffer without copying.
    """

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes | bytearray | memoryview, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else min(end, len(buf))

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, n: int) -> None:
        if n < 0:
            raise Malformed("bad_length", f"negative length {n}")
        if self.pos + n > self.end:
            raise Truncated(f"need {n} bytes at offset {self.pos}, {self.end - self.pos} left")

    def sub(self, n: int) -> Reader:
        """A reader over the next ``n`` bytes, advancing this one past them."""
        self.need(n)
        r = Reader(self.buf, self.pos, self.pos + n)
        self.pos += n
        return r

    def skip(self, n: int) -> None:
        self.need(n)
        self.pos += n

    def bytes(self, n: int) -> builtins.bytes:
        self.need(n)
        p = self.pos
        self.pos = p + n
        return bytes(self.buf[p : p + n])

    def rest(self) -> builtins.bytes:
        p = self.pos
        self.pos = self.end
        return bytes(self.buf[p : self.end])

    def peek_u8(self, offset: int = 0) -> int:
        self.need(offset + 1)
        return self.buf[self.pos + offset]

    def u8(self) -> int:
        self.need(1)
        v = self.buf[self.pos]
        self.pos += 1
        return v

    def _unpack(self, s: struct.Struct) -> Any:
        self.need(s.size)
        v = s.unpack_from(self.buf, self.pos)[0]
        self.pos += s.size
        return v

    def u16be(self) -> int:
        return int(self._unpack(_U16BE))

    def u32be(self) -> int:
        return int(self._unpack(_U32BE))

    def u16le(self) -> int:
        return int(self._unpack(_U16LE))

    def i16le(self) -> int:
        return int(self._unpack(_I16LE))

    def u32le(self) -> int:
        return int(self._unpack(_U32LE))

    def i32le(self) -> int:
        return int(self._unpack(_I32LE))

    def u64le(self) -> int:
        return int(self._unpack(_U64LE))

    def i64le(self) -> int:
        return int(self._unpack(_I64LE))

    def f32le(self) -> float:
        return float(self._unpack(_F32LE))

    def f64le(self) -> float:
        return float(self._unpack(_F64LE))


class Probe(enum.Enum):
    """Answer of a content probe on the first bytes of a direction."""

    YES = "yes"  # these bytes are this protocol
    NO = "no"  # they are not
    MORE = "more"  # cannot tell yet; ask again with more bytes


class DissectorSession(ABC):
    """Per-flow protocol state. Never raises on wire input."""

    @abstractmethod
    def feed(self, data: bytes, to_server: bool, ts: float) -> Sequence[AppEvent]:
        """Consume in-order bytes of one direction; return the events they complete."""

    @abstractmethod
    def gap(self, to_server: bool, size: int, ts: float) -> Sequence[AppEvent]:
        """Bytes were lost in one direction: drop partial state there and resync."""

    @abstractmethod
    def close(self, ts: float) -> Sequence[AppEvent]:
        """The flow ended: flush what is pending (e.g. unanswered requests) as events."""


class ProtocolStats(ABC):
    """Folds events into one section of the replay summary."""

    @abstractmethod
    def observe(self, event: AppEvent) -> None: ...

    @abstractmethod
    def section(self) -> dict[str, Any]: ...


class Dissector(ABC):
    """One protocol: detection and a session factory. Stateless itself."""

    name: ClassVar[str]  # protocol id, lower case: "modbus", "opcua", "mqtt", "tls"
    ports: ClassVar[frozenset[int]]  # server ports it is usually found on (a hint, not a rule)

    @abstractmethod
    def probe(self, data: bytes, to_server: bool) -> Probe:
        """Does this direction's first bytes look like the protocol? Must be cheap and strict
        enough that other protocols on the same port are refused (e.g. HTTP or TLS on 502)."""

    @abstractmethod
    def session(self, flow: FlowRef, limits: Limits) -> DissectorSession: ...

    @abstractmethod
    def stats(self) -> ProtocolStats: ...
