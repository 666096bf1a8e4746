"""OPC UA Binary encoding of the built-in types (OPC 10000-6 §5.2), decoded into JSON-safe values.

Every read goes through a bounds-checked :class:`~sensor.dissectors.base.Reader`; the decoder raises
only :class:`~sensor.errors.Truncated` or :class:`~sensor.errors.Malformed` with these reasons:

=================== ================================================================================
``bad_length``      an array or string length below -1, or larger than the bytes left (U6, U7)
``array_limit``     an array longer than ``Limits.opcua_max_array_elements``
``nesting_exceeded`` Variant / DiagnosticInfo / structure nesting deeper than the cap (U4, U5)
``bad_nodeid``      a NodeId encoding byte that is not defined
``bad_variant``     a Variant type id above 25
=================== ================================================================================

Nesting is counted explicitly (``Decoder.depth``) and the cap (100) is far below Python's recursion
limit, so a hostile message ends in ``nesting_exceeded``, never in ``RecursionError``. Values kept for
events are bounded: strings to ``max_chars`` characters, arrays to ``max_kept`` elements (the rest is
skipped, not decoded, when the element size is fixed). Invalid UTF-8 is replaced and flagged in
``Decoder.bad_utf8`` (U9). Matrix ArrayDimensions whose product does not equal the element count, or
that are negative, are rejected (not kept) and flagged in ``Decoder.bad_matrix`` (U8): the elements
themselves were read by their own count, so the rest of the message still decodes.
"""

from __future__ import annotations

import base64
import struct
import uuid
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sensor.dissectors.base import Reader
from sensor.dissectors.opcua.codes import BUILTIN_TYPES, encoding_name, status_name
from sensor.errors import Malformed

# DateTime: 100 ns ticks since 1601-01-01 UTC (OPC 10000-6 §5.2.2.5).
_EPOCH_1601 = datetime(1601, 1, 1, tzinfo=UTC)
_MAX_TICKS = 2650467743999999999  # 9999-12-31, above which the spec says "max date"

# Fixed-size built-ins: type id -> (struct code, size). Arrays of these are sliced, not looped over.
_FIXED: dict[int, tuple[str, int]] = {
    1: ("?", 1),
    2: ("b", 1),
    3: ("B", 1),
    4: ("h", 2),
    5: ("H", 2),
    6: ("i", 4),
    7: ("I", 4),
    8: ("q", 8),
    9: ("Q", 8),
    10: ("f", 4),
    11: ("d", 8),
    13: ("q", 8),
    19: ("I", 4),
}
# Smallest encoded size of one element of each built-in type, used to reject array lengths that
# cannot fit in the bytes left before looping over them (U6).
_MIN_SIZE: dict[int, int] = {t: s for t, (_c, s) in _FIXED.items()}
_MIN_SIZE.update({12: 4, 14: 16, 15: 4, 16: 4, 17: 2, 18: 2, 20: 6, 21: 1, 22: 3, 23: 1, 24: 1, 25: 1})
# One fixed-size scalar: type id -> (unpack_from, size), compiled once rather than per value.
_FIXED_SCALAR = {t: (struct.Struct("<" + code).unpack_from, size) for t, (code, size) in _FIXED.items()}

# Little-endian readers used by the Decoder's primitives. Each primitive checks the bytes left
# itself and calls Reader.need only to raise the same Truncated the Reader would have raised: one
# Python call per value instead of four (this is the per-element cost of every array).
_U16 = struct.Struct("<H").unpack_from
_U32 = struct.Struct("<I").unpack_from
_I32 = struct.Struct("<i").unpack_from
_I64 = struct.Struct("<q").unpack_from
_F64 = struct.Struct("<d").unpack_from

JSON = Any  # a JSON-safe value: None, bool, int, float, str, list, dict


@lru_cache(maxsize=256)  # a response repeats its timestamps (header, SourceTimestamp of each value)
def ticks_to_iso(ticks: int) -> str | None:
    """DateTime ticks -> ISO 8601 UTC, None for the null time (0) and for out-of-range values."""
    if ticks <= 0 or ticks >= _MAX_TICKS:
        return None
    return (_EPOCH_1601 + timedelta(microseconds=ticks // 10)).isoformat()


def _float(v: float) -> JSON:
    # NaN / infinities are not JSON; keep them readable.
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    return v


class Decoder:
    """A cursor over one message body that decodes OPC UA built-in types with caps."""

    __slots__ = ("bad_matrix", "bad_utf8", "depth", "max_array", "max_chars", "max_depth", "max_kept", "r")

    def __init__(
        self,
        reader: Reader,
        *,
        max_depth: int = 100,
        max_array: int = 10_000,
        max_chars: int = 256,
        max_kept: int = 32,
    ) -> None:
        self.r = reader
        self.depth = 0
        self.max_depth = max_depth
        self.max_array = max_array
        self.max_chars = max_chars
        self.max_kept = max_kept
        self.bad_utf8 = False
        self.bad_matrix = False

    # --- nesting ---------------------------------------------------------------------------------

    def enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise Malformed("nesting_exceeded", f"depth > {self.max_depth}")

    def leave(self) -> None:
        self.depth -= 1

    # --- lengths ---------------------------------------------------------------------------------

    def array_length(self, min_elem_size: int = 1) -> int:
        """Int32 array length: -1 is a null array (returned as -1), other negatives are bad (U7)."""
        r = self.r
        p = r.pos
        if p + 4 > r.end:
            r.need(4)
        r.pos = p + 4
        n: int = _I32(r.buf, p)[0]
        if n == -1:
            return -1
        if n < 0:
            raise Malformed("bad_length", f"array length {n}")
        if n * min_elem_size > r.end - r.pos:
            raise Malformed("bad_length", f"array of {n} with {r.end - r.pos} bytes left")
        if n > self.max_array:
            raise Malformed("array_limit", f"array of {n} > {self.max_array}")
        return n

    def _byte_length(self) -> int:
        r = self.r
        p = r.pos
        if p + 4 > r.end:
            r.need(4)
        r.pos = p + 4
        n: int = _I32(r.buf, p)[0]
        if n == -1:
            return -1
        if n < 0:
            raise Malformed("bad_length", f"string length {n}")
        if n > r.end - r.pos:
            raise Malformed("bad_length", f"string of {n} with {r.end - r.pos} bytes left")
        return n

    # --- scalars ---------------------------------------------------------------------------------

    def boolean(self) -> bool:
        return self.byte() != 0

    def byte(self) -> int:
        r = self.r
        p = r.pos
        if p >= r.end:
            r.need(1)
        r.pos = p + 1
        return r.buf[p]

    def uint16(self) -> int:
        r = self.r
        p = r.pos
        if p + 2 > r.end:
            r.need(2)
        r.pos = p + 2
        v: int = _U16(r.buf, p)[0]
        return v

    def uint32(self) -> int:
        r = self.r
        p = r.pos
        if p + 4 > r.end:
            r.need(4)
        r.pos = p + 4
        v: int = _U32(r.buf, p)[0]
        return v

    def int32(self) -> int:
        r = self.r
        p = r.pos
        if p + 4 > r.end:
            r.need(4)
        r.pos = p + 4
        v: int = _I32(r.buf, p)[0]
        return v

    def double(self) -> JSON:
        r = self.r
        p = r.pos
        if p + 8 > r.end:
            r.need(8)
        r.pos = p + 8
        return _float(_F64(r.buf, p)[0])

    def datetime(self) -> str | None:
        r = self.r
        p = r.pos
        if p + 8 > r.end:
            r.need(8)
        r.pos = p + 8
        return ticks_to_iso(_I64(r.buf, p)[0])

    def status_code(self) -> str:
        return status_name(self.uint32())

    def guid(self) -> str:
        raw = self.r.bytes(16)
        # Data1..3 little-endian, Data4 as bytes (OPC 10000-6 §5.2.2.7) = uuid's bytes_le layout.
        return str(uuid.UUID(bytes_le=raw))

    def string(self) -> str | None:
        """UTF-8 String, null as None; invalid UTF-8 replaced and flagged; kept to ``max_chars``."""
        n = self._byte_length()
        if n < 0:
            return None
        keep = min(n, self.max_chars * 4)
        raw = bytes(self.r.buf[self.r.pos : self.r.pos + keep])
        self.r.pos += n
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if keep < n and exc.start >= keep - 3:
                # cut inside a multi-byte sequence by our own truncation: not the sender's fault
                text = raw[: exc.start].decode("utf-8", "replace")
            else:
                self.bad_utf8 = True
                text = raw.decode("utf-8", "replace")
        return text[: self.max_chars]

    def bytestring_raw(self, cap: int = 1 << 20) -> bytes | None:
        """ByteString as bytes (for certificates, nonces); None when null. Bytes past ``cap`` skipped."""
        n = self._byte_length()
        if n < 0:
            return None
        data = bytes(self.r.buf[self.r.pos : self.r.pos + min(n, cap)])
        self.r.pos += n
        return data

    def bytestring_len(self) -> int:
        """Skip a ByteString, returning its length (-1 for null): for secrets and opaque blobs."""
        n = self._byte_length()
        if n > 0:
            self.r.pos += n
        return n

    def bytestring(self) -> str | None:
        """ByteString as a short hex preview (values in events)."""
        n = self._byte_length()
        if n < 0:
            return None
        keep = min(n, self.max_chars // 2)
        text = bytes(self.r.buf[self.r.pos : self.r.pos + keep]).hex()
        self.r.pos += n
        return text if keep == n else text + "..."

    def localized_text(self) -> str | None:
        mask = self.byte()
        if mask & 0x01:
            self.string()  # locale: not kept
        return self.string() if mask & 0x02 else None

    def qualified_name(self) -> str | None:
        ns = self.uint16()
        name = self.string()
        if name is None:
            return None
        return f"{ns}:{name}" if ns else name

    # --- NodeIds ---------------------------------------------------------------------------------

    def nodeid_parts(self) -> tuple[int, int | None, str]:
        """NodeId (OPC 10000-6 §5.2.2.9): (namespace, numeric id or None, text form ``ns=..;x=..``)."""
        return self._nodeid_body(self.byte() & 0x0F)

    def _nodeid_body(self, form: int) -> tuple[int, int | None, str]:
        r = self.r
        if form == 0:
            ident = self.byte()
            return 0, ident, f"i={ident}"
        if form == 1:
            # ns u8 | id u16 (four-byte form)
            p = r.pos
            if p + 3 > r.end:
                r.need(1)
                r.pos += 1
                r.need(2)
            r.pos = p + 3
            ns = r.buf[p]
            ident = _U16(r.buf, p + 1)[0]
        elif form == 2:
            ns = self.uint16()
            ident = self.uint32()
        elif form == 3:
            ns = self.uint16()
            s = self.string()
            return ns, None, (f"ns={ns};s={s}" if ns else f"s={s}")
        elif form == 4:
            ns = self.uint16()
            g = self.guid()
            return ns, None, (f"ns={ns};g={g}" if ns else f"g={g}")
        elif form == 5:
            ns = self.uint16()
            n = self._byte_length()
            raw = b"" if n < 0 else bytes(r.buf[r.pos : r.pos + min(n, 64)])
            r.pos += max(n, 0)
            b = base64.b64encode(raw).decode("ascii")
            return ns, None, (f"ns={ns};b={b}" if ns else f"b={b}")
        else:
            raise Malformed("bad_nodeid", f"encoding {form:#x}")
        return ns, ident, (f"ns={ns};i={ident}" if ns else f"i={ident}")

    def nodeid(self) -> str:
        return self.nodeid_parts()[2]

    def expanded_nodeid(self) -> str:
        """ExpandedNodeId (§5.2.2.10): NodeId with optional NamespaceUri (0x80) and ServerIndex (0x40)."""
        enc = self.byte()
        _ns, _ident, text = self._nodeid_body(enc & 0x0F)
        if enc & 0x80:
            uri = self.string()
            if uri is not None:
                text = f"nsu={uri};{text.split(';', 1)[-1]}"
        if enc & 0x40:
            server = self.uint32()
            if server:
                text = f"svr={server};{text}"
        return text

    # --- structured built-ins --------------------------------------------------------------------

    def extension_object(self) -> dict[str, JSON] | None:
        """ExtensionObject (§5.2.2.15) header; the body is skipped. None when it has no body."""
        _ns, ident, text = self.nodeid_parts()
        enc = self.byte()
        if enc == 0:
            return None if ident == 0 else {"type": text}
        if enc not in (1, 2):
            raise Malformed("bad_extension_object", f"encoding {enc:#x}")
        n = self._byte_length()
        self.r.pos += max(n, 0)
        name = encoding_name(ident) if (ident is not None and _ns == 0) else None
        return {"type": name or text, "bytes": max(n, 0)}

    def extension_object_open(self) -> tuple[int | None, Reader | None, str]:
        """ExtensionObject as (numeric ns=0 type id or None, reader over its binary body, type text)."""
        ns, ident, text = self.nodeid_parts()
        enc = self.byte()
        if enc == 0:
            return (ident if ns == 0 else None), None, text
        if enc not in (1, 2):
            raise Malformed("bad_extension_object", f"encoding {enc:#x}")
        n = self._byte_length()
        if n < 0:
            return (ident if ns == 0 else None), None, text
        body = self.r.sub(n)
        return (ident if ns == 0 and enc == 1 else None), body, text

    def data_value(self) -> dict[str, JSON]:
        """DataValue (§5.2.2.17): encoding mask then the fields it announces."""
        mask = self.byte()
        out: dict[str, JSON] = {}
        if mask & 0x01:
            out["value"] = self.variant()
        if mask & 0x02:
            out["status"] = self.status_code()
        if mask & 0x04:
            out["source_timestamp"] = self.datetime()
        if mask & 0x10:
            self.uint16()
        if mask & 0x08:
            out["server_timestamp"] = self.datetime()
        if mask & 0x20:
            self.uint16()
        return out

    def diagnostic_info(self) -> dict[str, JSON] | None:
        """DiagnosticInfo (§5.2.2.12). The InnerDiagnosticInfo chain is walked in a loop, not by
        recursion, and its depth is capped (U5). String-table indices are kept as numbers, so an
        absent or short string table is never dereferenced (U10)."""
        top: dict[str, JSON] | None = None
        current: dict[str, JSON] | None = None
        levels = 0
        while True:
            mask = self.byte()
            info: dict[str, JSON] = {}
            if mask & 0x01:
                info["symbolic_id"] = self.r.i32le()
            if mask & 0x02:
                info["namespace_uri"] = self.r.i32le()
            if mask & 0x08:
                info["locale"] = self.r.i32le()
            if mask & 0x04:
                info["localized_text"] = self.r.i32le()
            if mask & 0x10:
                info["additional_info"] = self.string()
            if mask & 0x20:
                info["inner_status"] = self.status_code()
            if current is None:
                top = info
            else:
                current["inner"] = info
            current = info
            if not mask & 0x40:
                return top if mask else top or None
            levels += 1
            if self.depth + levels > self.max_depth:
                raise Malformed("nesting_exceeded", f"DiagnosticInfo deeper than {self.max_depth}")

    def variant(self) -> JSON:
        """Variant (§5.2.2.16): mask = type id (low 6 bits) | 0x40 ArrayDimensions | 0x80 array."""
        mask = self.byte()
        type_id = mask & 0x3F
        if type_id > 25:
            raise Malformed("bad_variant", f"type id {type_id}")
        type_name = BUILTIN_TYPES[type_id]
        if not mask & 0x80:
            if type_id == 0:
                return None
            return {"type": type_name, "value": self.builtin(type_id)}
        self.enter()
        try:
            n = self.array_length(_MIN_SIZE.get(type_id, 1))
            values = self.builtin_array(type_id, n)
            out: dict[str, JSON] = {"type": type_name, "array": values, "length": n}
            if mask & 0x40:
                dims_n = self.array_length(4)
                dims = [self.r.i32le() for _ in range(max(dims_n, 0))]
                # Python ints do not overflow: [65536, 65536, 65536] is compared exactly (U8). The
                # elements are already consumed, so a mismatch rejects the dimensions, not the value.
                product = 1
                for dim in dims:
                    product *= dim if dim >= 0 else -(1 << 62)
                if product == max(n, 0) and dims_n > 0:
                    out["dimensions"] = dims
                else:
                    self.bad_matrix = True
                    out["bad_dimensions"] = dims[:8]
            return out
        finally:
            self.leave()

    def builtin_array(self, type_id: int, n: int) -> list[JSON] | None:
        """``n`` elements of a built-in type; keeps at most ``max_kept`` of them."""
        if n < 0:
            return None
        fixed = _FIXED.get(type_id)
        if fixed is not None:
            code, size = fixed
            kept = min(n, self.max_kept)
            self.r.need(n * size)
            vals = list(struct.unpack_from(f"<{kept}{code}", self.r.buf, self.r.pos))
            self.r.pos += n * size
            if type_id == 10 or type_id == 11:
                return [_float(v) for v in vals]
            if type_id == 13:
                return [ticks_to_iso(v) for v in vals]
            if type_id == 19:
                return [status_name(v) for v in vals]
            return vals
        out: list[JSON] = []
        for i in range(n):
            v = self.builtin(type_id)
            if i < self.max_kept:
                out.append(v)
        return out

    def builtin(self, type_id: int) -> JSON:
        """One value of a built-in type (OPC 10000-6 §5.1.2 Table 1)."""
        scalar = _FIXED_SCALAR.get(type_id)
        r = self.r
        if scalar is not None:
            unpack, size = scalar
            r.need(size)
            (v,) = unpack(r.buf, r.pos)
            r.pos += size
            if type_id == 10 or type_id == 11:
                return _float(v)
            if type_id == 13:
                return ticks_to_iso(v)
            if type_id == 19:
                return status_name(v)
            return v
        if type_id == 12 or type_id == 16:
            return self.string()
        if type_id == 14:
            return self.guid()
        if type_id == 15:
            return self.bytestring()
        if type_id == 17:
            return self.nodeid()
        if type_id == 18:
            return self.expanded_nodeid()
        if type_id == 20:
            return self.qualified_name()
        if type_id == 21:
            return self.localized_text()
        if type_id == 22:
            return self.extension_object()
        self.enter()
        try:
            if type_id == 23:
                return self.data_value()
            if type_id == 24:
                return self.variant()
            if type_id == 25:
                return self.diagnostic_info()
        finally:
            self.leave()
        return None  # type id 0 (Null)

    # --- arrays of structures --------------------------------------------------------------------

    def array_of(self, read_one: Any, min_elem_size: int = 1) -> list[JSON] | None:
        """Array of a structure read by ``read_one()``; keeps ``max_kept`` elements, decodes all."""
        n = self.array_length(min_elem_size)
        if n < 0:
            return None
        self.enter()
        try:
            out: list[JSON] = []
            for i in range(n):
                v = read_one()
                if i < self.max_kept:
                    out.append(v)
            return out
        finally:
            self.leave()

    def string_array(self) -> list[JSON] | None:
        return self.array_of(self.string, 4)

    def status_code_array(self) -> list[JSON] | None:
        n = self.array_length(4)
        return self.builtin_array(19, n)

    def uint32_array(self) -> list[JSON] | None:
        n = self.array_length(4)
        return self.builtin_array(7, n)

    def diagnostic_info_array(self) -> list[JSON] | None:
        return self.array_of(self.diagnostic_info, 1)
