"""Builders of the crafted captures replay cases need (scapy, deterministic).

Real-stack captures live in pcaps/; these build what a real stack will not send on purpose:
mid-stream pickup, lost segments, protocol violations, floods and non-standard ports.
"""

from __future__ import annotations

import struct
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

T0 = 1_700_000_000.0


def mbap(tid: int, unit: int, pdu: bytes, proto: int = 0, length: int | None = None) -> bytes:
    """MODBUS Messaging on TCP/IP v1.0b §3.1.3: transaction id, protocol id, length, unit id."""
    return struct.pack(">HHHB", tid, proto, len(pdu) + 1 if length is None else length, unit) + pdu


def read_holding(tid: int, unit: int, addr: int, qty: int) -> bytes:
    return mbap(tid, unit, struct.pack(">BHH", 3, addr, qty))


def read_holding_response(tid: int, unit: int, values: list[int]) -> bytes:
    return mbap(
        tid, unit, struct.pack(">BB", 3, 2 * len(values)) + b"".join(struct.pack(">H", v) for v in values)
    )


class Conversation:
    """One TCP connection between a client and a server, with sequence numbers kept right."""

    def __init__(self, client: str, server: str, cport: int, sport: int, t0: float = T0) -> None:
        self.client, self.server, self.cport, self.sport = client, server, cport, sport
        self.cseq, self.sseq = 1000, 5000
        self.t = t0
        self.packets: list[Packet] = []

    def _pkt(self, to_server: bool, flags: str, payload: bytes = b"", seq: int | None = None) -> Packet:
        self.t += 0.001
        if to_server:
            ip = IP(src=self.client, dst=self.server)
            tcp = TCP(
                sport=self.cport,
                dport=self.sport,
                flags=flags,
                seq=self.cseq if seq is None else seq,
                ack=self.sseq,
            )
        else:
            ip = IP(src=self.server, dst=self.client)
            tcp = TCP(
                sport=self.sport,
                dport=self.cport,
                flags=flags,
                seq=self.sseq if seq is None else seq,
                ack=self.cseq,
            )
        p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip / tcp
        if payload:
            p = p / Raw(payload)
        p.time = self.t
        return p

    def handshake(self) -> Conversation:
        self.packets.append(self._pkt(True, "S"))
        self.cseq += 1
        self.packets.append(self._pkt(False, "SA"))
        self.sseq += 1
        self.packets.append(self._pkt(True, "A"))
        return self

    def send(self, to_server: bool, payload: bytes, lose: bool = False) -> Conversation:
        """Send payload in one segment; ``lose`` advances the sequence without recording it."""
        pkt = self._pkt(to_server, "PA", payload)
        if not lose:
            self.packets.append(pkt)
        if to_server:
            self.cseq += len(payload)
        else:
            self.sseq += len(payload)
        return self

    def close(self) -> Conversation:
        self.packets.append(self._pkt(True, "FA"))
        self.cseq += 1
        self.packets.append(self._pkt(False, "FA"))
        self.sseq += 1
        self.packets.append(self._pkt(True, "A"))
        return self


def _write(out: Path, *convs: Conversation) -> None:
    packets = sorted((p for c in convs for p in c.packets), key=lambda p: float(p.time))
    wrpcap(str(out), packets)


def mid_stream(out: Path) -> None:
    """A polling session picked up mid-stream: no handshake, the first PDU is a response."""
    c = Conversation("10.0.0.10", "10.0.0.20", 50123, 502)
    c.send(False, read_holding_response(6, 1, [1, 2, 3, 4]))
    for tid in range(7, 12):
        c.send(True, read_holding(tid, 1, 100, 4))
        c.send(False, read_holding_response(tid, 1, [tid, 0, 0, 1]))
    _write(out, c)


def gap(out: Path) -> None:
    """A lost request segment: the gap is reported and the next transactions still decode."""
    c = Conversation("10.0.0.10", "10.0.0.20", 50124, 502).handshake()
    for tid in range(1, 4):
        c.send(True, read_holding(tid, 1, 0, 2))
        c.send(False, read_holding_response(tid, 1, [7, 8]))
    c.send(True, read_holding(4, 1, 0, 2), lose=True)
    c.send(False, read_holding_response(4, 1, [7, 8]))
    for tid in range(5, 8):
        c.send(True, read_holding(tid, 1, 0, 2))
        c.send(False, read_holding_response(tid, 1, [7, 8]))
    c.close()
    _write(out, c)


def non_standard_port(out: Path) -> None:
    """Modbus on 5020 and 1502 (found by content), and HTTP on 502 (not taken for Modbus)."""
    convs = []
    for port, client in ((5020, "10.0.1.10"), (1502, "10.0.1.11")):
        c = Conversation(client, "10.0.1.20", 40000 + port % 1000, port).handshake()
        for tid in range(1, 4):
            c.send(True, read_holding(tid, 2, 10, 3))
            c.send(False, read_holding_response(tid, 2, [1, 2, 3]))
        convs.append(c.close())
    http = Conversation("10.0.1.12", "10.0.1.21", 41000, 502).handshake()
    http.send(True, b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n")
    http.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    convs.append(http.close())
    _write(out, *convs)


def malformed(out: Path) -> None:
    """Protocol violations inside an established Modbus session; valid PDUs around them still decode."""
    c = Conversation("10.0.2.10", "10.0.2.20", 50200, 502).handshake()
    c.send(True, read_holding(1, 1, 0, 1))
    c.send(False, read_holding_response(1, 1, [42]))
    c.send(True, mbap(2, 1, struct.pack(">BHH", 3, 0, 1), proto=1))  # M1: protocol id 1
    c.send(True, mbap(3, 1, b"", length=1))  # M2: length 1
    c.send(True, mbap(4, 1, bytes([0x00, 0, 0, 0, 1])))  # M6: function code 0
    c.send(True, mbap(5, 1, struct.pack(">BHH", 3, 0, 0)))  # M8: quantity 0
    c.send(True, read_holding(6, 1, 0, 1))
    c.send(False, read_holding_response(6, 1, [43]))
    c.close()
    _write(out, c)


def limit_exceeded(out: Path) -> None:
    """600 requests that are never answered: the pending table is capped and the flood reported (M9)."""
    c = Conversation("10.0.3.10", "10.0.3.20", 50300, 502).handshake()
    for tid in range(1, 601):
        c.send(True, read_holding(tid, 1, tid % 100, 1))
    _write(out, c)


def truncated_file(out: Path) -> None:
    """A valid capture whose last record is cut short (P2): earlier packets count, exit 0, a warning."""
    mid_stream(out)
    data = out.read_bytes()
    out.write_bytes(data[:-7])


def not_a_capture(out: Path) -> None:
    """A text file named .pcap (P1): one-line error, exit 2."""
    out.write_text("this is not a capture file\n" * 4)


def rules_modbus_attack(out: Path) -> None:
    """Traffic that makes each project Modbus rule fire (rules/zonewarden-modbus.rules)."""
    from zw_rules_builders import modbus_attack

    modbus_attack(out)


def rules_mqtt_attack(out: Path) -> None:
    """Traffic that makes each project MQTT rule fire (rules/zonewarden-mqtt.rules)."""
    from zw_rules_builders import mqtt_attack

    mqtt_attack(out)


def rules_opcua_attack(out: Path) -> None:
    """Traffic that makes each project OPC UA rule fire (rules/zonewarden-opcua.rules)."""
    from zw_rules_builders import opcua_attack

    opcua_attack(out)


def _mqtt_connect(client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT (§3.1), clean session, keep-alive 60 s."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack(">H", len(cid)) + cid
    return bytes([0x10, len(body)]) + body


def assets_identity_conflict(out: Path) -> None:
    """Two hosts connect to one broker with the same MQTT client id (identity conflict), and four hosts
    appear behind one MAC (a router): the inventory keeps them apart and flags the conflict."""
    convs = []
    for n, client in enumerate(("10.1.0.11", "10.1.0.12")):
        c = Conversation(client, "10.1.0.5", 40000 + n, 1883, t0=T0 + n)
        c.handshake().send(True, _mqtt_connect("line1-plc")).send(False, b"\x20\x02\x00\x00").close()
        convs.append(c)
    for n, client in enumerate(("10.2.0.21", "10.2.0.22")):
        c = Conversation(client, "10.1.0.5", 41000 + n, 1883, t0=T0 + 5 + n)
        c.handshake().send(True, _mqtt_connect(f"sensor-{n}")).send(False, b"\x20\x02\x00\x00").close()
        convs.append(c)
    _write(out, *convs)


def labels_tagged_plant(out: Path) -> None:
    """An HMI polls a PLC and writes one register; an untagged laptop reads once. Every address is
    outside any CIDR a policy names: only the tags people gave them (``assets tag``) can zone them."""
    hmi = Conversation("10.30.0.10", "10.30.1.20", 50500, 502).handshake()
    for tid in range(1, 6):
        hmi.send(True, read_holding(tid, 1, 0, 4))
        hmi.send(False, read_holding_response(tid, 1, [tid, 2, 3, 4]))
    write = mbap(6, 1, struct.pack(">BHH", 6, 10, 1234))  # Write Single Register (§6.6): echoed back
    hmi.send(True, write).send(False, write).close()
    laptop = Conversation("10.30.0.99", "10.30.1.20", 50600, 502, t0=T0 + 1).handshake()
    laptop.send(True, read_holding(1, 1, 0, 1)).send(False, read_holding_response(1, 1, [7])).close()
    _write(out, hmi, laptop)


def remote_span_erspan(out: Path) -> None:
    """Two remote switches mirror a Modbus cell each to the sensor over ERSPAN type II (sessions 21 and
    22): what a central sensor fed by remote SPAN receives, every frame inside GRE."""
    from scapy.contrib.erspan import ERSPAN_II
    from scapy.layers.l2 import GRE

    cells = [
        ("10.255.0.1", 21, Conversation("10.1.0.10", "10.1.0.20", 50201, 502).handshake()),
        ("10.255.0.2", 22, Conversation("10.2.0.10", "10.2.0.20", 50202, 502).handshake()),
    ]
    packets = []
    for switch, session, conv in cells:
        for tid in range(1, 4):
            conv.send(True, read_holding(tid, 1, 0, 2))
            conv.send(False, read_holding_response(tid, 1, [tid, 7]))
        conv.close()
        for seq, mirrored in enumerate(conv.packets):
            outer = (
                Ether(src="02:00:00:00:ff:01", dst="02:00:00:00:ff:64")
                / IP(src=switch, dst="10.255.0.100")
                / GRE(seqnum_present=1, sequence_number=seq, proto=0x88BE)
                / ERSPAN_II(session_id=session)
                / mirrored
            )
            outer.time = mirrored.time
            packets.append(outer)
    wrpcap(str(out), sorted(packets, key=lambda p: float(p.time)))
