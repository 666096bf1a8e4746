"""TLS handshake metadata (RFC 5246 TLS 1.2, RFC 8446 TLS 1.3): versions, SNI, ALPN, cipher suites,
JA3/JA3S, certificates of both sides (TLS <= 1.2) and alerts, for MQTT on 8883, OPC UA over HTTPS
(4843), Modbus/TCP Security (802) and anything else. Content after ChangeCipherSpec is only counted.
"""

from __future__ import annotations

from typing import ClassVar

from sensor.dissectors.base import Dissector, DissectorSession, Probe, ProtocolStats
from sensor.dissectors.tls.events import TlsHandshake
from sensor.dissectors.tls.session import TlsSession
from sensor.dissectors.tls.stats import TlsStats
from sensor.limits import Limits
from sensor.records import FlowRef

__all__ = ["TlsDissector", "TlsHandshake", "TlsSession", "TlsStats"]


class TlsDissector(Dissector):
    name: ClassVar[str] = "tls"
    ports: ClassVar[frozenset[int]] = frozenset({443, 8883, 4843, 802, 8443})

    def probe(self, data: bytes, to_server: bool) -> Probe:
        """A handshake record (type 22, version 3.0-3.4) opening with ClientHello (client) or
        ServerHello (server) whose length fits a record (RFC 8446 §5.1)."""
        n = len(data)
        if n >= 1 and data[0] != 0x16:
            return Probe.NO
        if n >= 2 and data[1] != 0x03:
            return Probe.NO
        if n >= 3 and data[2] > 0x04:
            return Probe.NO
        if n < 6:
            return Probe.MORE
        length = (data[3] << 8) | data[4]
        expected = 1 if to_server else 2
        if length < 4 or length > 16384 + 2048 or data[5] != expected:
            return Probe.NO
        return Probe.YES

    def session(self, flow: FlowRef, limits: Limits) -> DissectorSession:
        return TlsSession(flow, limits)

    def stats(self) -> ProtocolStats:
        return TlsStats()
