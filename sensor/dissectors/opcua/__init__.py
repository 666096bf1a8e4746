"""OPC UA Binary (UA-TCP, UA Secure Conversation and services; OPC 10000-6 §7.1, §6.7, OPC 10000-4).

Detection (:meth:`OpcUaDissector.probe`) is by content: an 8-byte message header with a known
MessageType, a chunk type F/C/A and a sane MessageSize (OPC 10000-6 §7.1.2.2). HTTP and TLS on the
same ports are refused because their first bytes can never form such a header.
"""

from __future__ import annotations

import struct
from typing import ClassVar

from sensor.dissectors.base import Dissector, Probe
from sensor.dissectors.opcua import codes
from sensor.dissectors.opcua.session import HostTracker, OpcUaSession
from sensor.dissectors.opcua.stats import OpcUaStats
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import FlowRef

__all__ = ["OpcUaDissector", "OpcUaSession", "OpcUaStats"]

_PROBE_MAX_SIZE = 16 * 1024 * 1024


class OpcUaDissector(Dissector):
    name: ClassVar[str] = "opcua"
    ports: ClassVar[frozenset[int]] = frozenset({4840, 4843})

    def __init__(self) -> None:
        # Counters per client host shared by this dissector's sessions (channel cap U13, repeated
        # BadCertificate / BadUserAccessDenied results across connections).
        self.hosts = HostTracker()

    def probe(self, data: bytes, to_server: bool) -> Probe:
        if not data:
            return Probe.MORE
        head = data[:3]
        if not any(t.startswith(head) for t in codes.MESSAGE_TYPES):
            return Probe.NO
        if len(data) < 8:
            if len(data) > 3 and data[3] not in codes.CHUNK_TYPES:
                return Probe.NO
            return Probe.MORE
        mtype = bytes(data[:3])
        if data[3] not in codes.CHUNK_TYPES:
            return Probe.NO
        (size,) = struct.unpack_from("<I", data, 4)
        if mtype in codes.SECURE_MESSAGE_TYPES:
            if size < 24 or size > _PROBE_MAX_SIZE:
                return Probe.NO
            if len(data) < 12:
                return Probe.MORE
            if mtype == codes.MSG_OPN:
                # SecurityPolicyUri length: -1 or a URI of sensible length
                if len(data) < 16:
                    return Probe.MORE
                (n,) = struct.unpack_from("<i", data, 12)
                return Probe.YES if n == -1 or 0 <= n <= 1024 else Probe.NO
            return Probe.YES
        if size < 8 or size > _PROBE_MAX_SIZE:
            return Probe.NO
        if mtype in (codes.MSG_HEL, codes.MSG_ACK):
            if size < 28:
                return Probe.NO
            if len(data) < 12:
                return Probe.MORE
            (version,) = struct.unpack_from("<I", data, 8)
            return Probe.YES if version < 256 else Probe.NO
        return Probe.YES

    def session(self, flow: FlowRef, limits: Limits = DEFAULT_LIMITS) -> OpcUaSession:
        return OpcUaSession(flow, limits, self.hosts)

    def stats(self) -> OpcUaStats:
        return OpcUaStats()
