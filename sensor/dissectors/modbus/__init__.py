"""Modbus/TCP dissector (MODBUS Application Protocol v1.1b3, Messaging on TCP/IP v1.0b).

Detection is by content as well as port (ANCHORS.md §2 4.0/4.1): a strict probe that refuses HTTP,
TLS and anything else sent to port 502 (hostile input M11), so such a flow never becomes a device.
"""

from __future__ import annotations

from typing import ClassVar, Final

from sensor.dissectors.base import Dissector, Probe
from sensor.dissectors.modbus.session import ModbusSession, PduMemo, plausible_header
from sensor.dissectors.modbus.stats import ModbusStats
from sensor.limits import Limits
from sensor.records import FlowRef

__all__ = ["ModbusDissector", "ModbusSession", "ModbusStats"]

# Text and TLS protocols that are seen on 502 by mistake or on purpose (Zeek 05d92dc2, Suricata #5377).
_FOREIGN_PREFIXES: Final = (
    b"GET ",
    b"POST",
    b"HTTP",
    b"HEAD",
    b"PUT ",
    b"OPTI",
    b"CONN",
    b"SSH-",
    b"\x16\x03",
)


def _frames_exactly(data: bytes, to_server: bool) -> Probe:
    """Do the MBAP lengths cut ``data`` into whole ADUs with sane headers and function codes?"""
    n = len(data)
    p = 0
    while p < n:
        if any(data[p + 2 : p + 5]):
            return Probe.NO
        if n - p < 8:
            return Probe.MORE
        length = data[p + 5]
        fc = data[p + 7]
        if length < 2 or length > 254 or fc == 0 or (to_server and fc & 0x80) or fc == 0x80:
            return Probe.NO
        p += 6 + length
    return Probe.YES if p == n else Probe.MORE


class ModbusDissector(Dissector):
    name: ClassVar[str] = "modbus"
    ports: ClassVar[frozenset[int]] = frozenset({502})

    def probe(self, data: bytes, to_server: bool) -> Probe:
        """YES when the first bytes of a direction are Modbus/TCP; MORE under 8 bytes.

        Accepted: an MBAP header with protocol id 0 and length 2..254 whose function code the spec
        names for this direction and whose length fits that function (see
        :func:`~sensor.dissectors.modbus.session.plausible_header`); or, for other function codes
        and lengths (user-defined codes, sloppy devices adding a byte to an exception), bytes that
        the MBAP lengths frame exactly into back-to-back ADUs. HTTP, TLS, SSH and anything whose
        protocol id is not 0 are refused (M1, M11).
        """
        if data[:4].startswith(_FOREIGN_PREFIXES):
            return Probe.NO
        n = len(data)
        if n >= 4 and (data[2] or data[3]):
            return Probe.NO  # protocol id != 0 (M1)
        if n >= 5 and data[4]:
            return Probe.NO  # length > 255
        if n < 8:
            return Probe.MORE
        # Either orientation: a flow whose SYN came from port 502 is oriented the other way round
        # by the flow table, and the session turns it back (see ModbusSession).
        if plausible_header(data, 0, to_server) or plausible_header(data, 0, not to_server):
            return Probe.YES
        verdict = _frames_exactly(data, to_server)
        return verdict if verdict is not Probe.NO else _frames_exactly(data, not to_server)

    def __init__(self) -> None:
        self._memo: PduMemo | None = None  # shared by this dissector's sessions, sized by their limits

    def session(self, flow: FlowRef, limits: Limits) -> ModbusSession:
        if self._memo is None or self._memo.entries != limits.modbus_pdu_memo:
            self._memo = PduMemo(limits.modbus_pdu_memo)
        return ModbusSession(flow, limits, self._memo)

    def stats(self) -> ModbusStats:
        return ModbusStats()
