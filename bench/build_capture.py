"""Deterministic benchmark capture: Modbus/TCP polling among ~50 hosts, plus OPC UA Read polling.

The pcap is written directly with ``struct`` (Ethernet II / IPv4 / TCP, correct IP and TCP checksums,
sequence and acknowledgement numbers, a three-way handshake per connection) because building 500k
packets through scapy would take minutes. The generator counts what it writes, so a benchmark can check
the dissector's output against the truth and not only time it.

Traffic (seeded, so the same arguments always give the same bytes):

* 4 Modbus masters each poll 10-12 of 40 slaves (one TCP connection per pair, port 502) in rounds.
  Each slave has 1-3 unit ids (gateways have several). Per transaction: FC3 / FC4 / FC1 reads, an
  occasional FC6 or FC16 write, rarely an exception response (code 2, illegal data address).
  Sometimes a master pipelines 2-3 requests in one segment, answered in one segment; sometimes a
  response is split across two segments. Masters send a bare ACK after some responses.
* With ``opcua``: 2 OPC UA clients poll 2 servers (port 4840): HEL/ACK, OpenSecureChannel with
  SecurityPolicy None, then MSG chunks carrying ReadRequest (encoding NodeId 631) and ReadResponse
  (634), OPC 10000-6 §7.1 (UA TCP), §6.7 (secure conversation), OPC 10000-4 §5.10.2 (Read).

Usage: ``python bench/build_capture.py OUT.pcap [--packets N] [--seed S] [--no-opcua]`` prints the counts
as JSON.
"""

from __future__ import annotations

import argparse
import array
import json
import random
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

START_TIME = 1_704_067_200.0  # 2024-01-01T00:00:00Z
MODBUS_PORT, OPCUA_PORT = 502, 4840
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
FLUSH_BYTES = 4 * 1024 * 1024

# --------------------------------------------------------------------------------------------------
# Packet writing
# --------------------------------------------------------------------------------------------------


def ones_complement_checksum(data: bytes) -> int:
    """RFC 1071 checksum, summed in native byte order (valid by §2(B)); pack the result with "=H"."""
    if len(data) % 2:
        data += b"\0"
    total = sum(array.array("H", data))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_for(ip: str) -> bytes:
    return b"\x02\x00" + bytes(int(octet) for octet in ip.split("."))


class PcapWriter:
    """Classic pcap (microsecond) writer with a write buffer."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.buffer = bytearray(PCAP_HEADER)
        self.packets = 0

    def write(self, time: float, frame: bytes) -> None:
        seconds = int(time)
        micros = round((time - seconds) * 1_000_000)
        if micros >= 1_000_000:
            seconds, micros = seconds + 1, micros - 1_000_000
        self.buffer += struct.pack("<IIII", seconds, micros, len(frame), len(frame))
        self.buffer += frame
        self.packets += 1
        if len(self.buffer) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        self.stream.write(self.buffer)
        self.buffer.clear()


class TcpConnection:
    """One TCP connection's two directions: header templates, sequence numbers, IP ids."""

    def __init__(self, rng: random.Random, client: tuple[str, int], server: tuple[str, int]) -> None:
        self.client, self.server = client, server
        self.seq = {True: rng.getrandbits(32), False: rng.getrandbits(32)}  # key: from_client
        self.ip_id = {True: rng.getrandbits(16), False: rng.getrandbits(16)}
        self.templates = {True: self._template(client, server), False: self._template(server, client)}

    @staticmethod
    def _template(
        source: tuple[str, int], destination: tuple[str, int]
    ) -> tuple[bytes, bytes, bytes, int, int]:
        source_ip = bytes(int(octet) for octet in source[0].split("."))
        destination_ip = bytes(int(octet) for octet in destination[0].split("."))
        ethernet = mac_for(destination[0]) + mac_for(source[0]) + b"\x08\x00"
        return ethernet, source_ip, destination_ip, source[1], destination[1]

    def frame(self, from_client: bool, flags: int, payload: bytes = b"") -> bytes:
        ethernet, source_ip, destination_ip, source_port, destination_port = self.templates[from_client]
        seq = self.seq[from_client]
        ack = self.seq[not from_client] if flags & ACK else 0
        tcp = bytearray(
            struct.pack("!HHIIBBHHH", source_port, destination_port, seq, ack, 5 << 4, flags, 65535, 0, 0)
        )
        pseudo = source_ip + destination_ip + struct.pack("!BBH", 0, 6, 20 + len(payload))
        struct.pack_into("=H", tcp, 16, ones_complement_checksum(pseudo + bytes(tcp) + payload))
        ip_id = self.ip_id[from_client]
        self.ip_id[from_client] = (ip_id + 1) & 0xFFFF
        ip = bytearray(
            struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                40 + len(payload),
                ip_id,
                0x4000,
                64,
                6,
                0,
                source_ip,
                destination_ip,
            )
        )
        struct.pack_into("=H", ip, 10, ones_complement_checksum(bytes(ip)))
        self.seq[from_client] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        return ethernet + ip + tcp + payload


# --------------------------------------------------------------------------------------------------
# Modbus (MODBUS Application Protocol v1.1b3 §6; Messaging on TCP/IP v1.0b §3.1.3 MBAP)
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Poll:
    function: int
    unit: int
    address: int
    quantity: int


def modbus_request(poll: Poll, rng: random.Random) -> bytes:
    if poll.function in (1, 3, 4):
        return struct.pack(">BHH", poll.function, poll.address, poll.quantity)
    if poll.function == 6:
        return struct.pack(">BHH", 6, poll.address, rng.getrandbits(16))
    values = b"".join(struct.pack(">H", rng.getrandbits(16)) for _ in range(poll.quantity))
    return struct.pack(">BHHB", 16, poll.address, poll.quantity, 2 * poll.quantity) + values


def modbus_response(poll: Poll, request_pdu: bytes, rng: random.Random) -> bytes:
    if poll.function in (3, 4):
        return struct.pack(">BB", poll.function, 2 * poll.quantity) + rng.randbytes(2 * poll.quantity)
    if poll.function == 1:
        count = (poll.quantity + 7) // 8
        return struct.pack(">BB", 1, count) + rng.randbytes(count)
    if poll.function == 6:
        return request_pdu
    return struct.pack(">BHH", 16, poll.address, poll.quantity)


def mbap(transaction: int, unit: int, pdu: bytes) -> bytes:
    """MBAP header: transaction id, protocol id 0, length (unit id + PDU), unit id."""
    return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, unit) + pdu


@dataclass(slots=True)
class ModbusLink:
    connection: TcpConnection
    polls: list[Poll]
    next_poll: int = 0
    transaction: int = 0


# --------------------------------------------------------------------------------------------------
# OPC UA Binary (OPC 10000-6): every integer little-endian
# --------------------------------------------------------------------------------------------------

SECURITY_POLICY_NONE = b"http://opcfoundation.org/UA/SecurityPolicy#None"
OPEN_SECURE_CHANNEL_REQUEST, OPEN_SECURE_CHANNEL_RESPONSE = 446, 449
READ_REQUEST, READ_RESPONSE = 631, 634
TICKS_PER_SECOND = 10_000_000
EPOCH_1601_TO_1970 = 11_644_473_600


def ua_string(value: bytes | None) -> bytes:
    return struct.pack("<i", -1) if value is None else struct.pack("<i", len(value)) + value


def ua_datetime(time: float) -> bytes:
    return struct.pack("<q", int((time + EPOCH_1601_TO_1970) * TICKS_PER_SECOND))


def ua_type_id(identifier: int) -> bytes:
    """Four-byte NodeId encoding (namespace 0) of a service's binary encoding id (OPC 10000-6 §5.2.2.9)."""
    return struct.pack("<BBH", 0x01, 0, identifier)


def ua_message(message_type: bytes, body: bytes) -> bytes:
    """UA TCP message header (OPC 10000-6 §7.1.2.2): MessageType, 'F', MessageSize including the header.

    +-------------+-----------+-------------+
    | type (3 B)  | chunk 'F' | size (u32)  |
    +-------------+-----------+-------------+
    """
    return message_type + b"F" + struct.pack("<I", 8 + len(body)) + body


def request_header(time: float, handle: int) -> bytes:
    """RequestHeader (OPC 10000-4 §7.33): null auth token, timestamp, handle, diagnostics, audit id,
    timeout hint, empty additional header."""
    return (
        b"\x00\x00"
        + ua_datetime(time)
        + struct.pack("<II", handle, 0)
        + ua_string(None)
        + struct.pack("<I", 10000)
        + b"\x00\x00\x00"
    )


def response_header(time: float, handle: int) -> bytes:
    """ResponseHeader (OPC 10000-4 §7.34): timestamp, handle, Good, no diagnostics, empty string table."""
    return (
        ua_datetime(time) + struct.pack("<II", handle, 0) + b"\x00" + struct.pack("<i", -1) + b"\x00\x00\x00"
    )


@dataclass(slots=True)
class OpcUaLink:
    connection: TcpConnection
    nodes: list[int]
    channel_id: int
    token_id: int
    sequence: int = 1
    request_id: int = 1
    handle: int = 1


def read_request(link: OpcUaLink, time: float) -> bytes:
    count = len(link.nodes)
    nodes = b"".join(
        struct.pack("<BBH", 0x01, 2, node)
        + struct.pack("<I", 13)
        + ua_string(None)
        + struct.pack("<H", 0)
        + ua_string(None)
        for node in link.nodes
    )  # ReadValueId: NodeId ns=2, AttributeId Value (13), IndexRange null, DataEncoding null
    body = (
        ua_type_id(READ_REQUEST)
        + request_header(time, link.handle)
        + struct.pack("<dii", 0.0, 2, count)  # MaxAge, TimestampsToReturn Both, NodesToRead length
        + nodes
    )
    return symmetric_chunk(link, body)


def read_response(link: OpcUaLink, time: float, rng: random.Random) -> bytes:
    values = b"".join(
        b"\x05" + b"\x0b" + struct.pack("<d", rng.uniform(0, 100)) + ua_datetime(time) for _ in link.nodes
    )  # DataValue mask Value|SourceTimestamp, Variant Double
    body = (
        ua_type_id(READ_RESPONSE)
        + response_header(time, link.handle)
        + struct.pack("<i", len(link.nodes))
        + values
        + struct.pack("<i", -1)  # DiagnosticInfos: null array
    )
    return symmetric_chunk(link, body)


def symmetric_chunk(link: OpcUaLink, body: bytes) -> bytes:
    """MSG chunk: symmetric security header (channel, token) and sequence header (OPC 10000-6 §6.7.2)."""
    headers = struct.pack("<IIII", link.channel_id, link.token_id, link.sequence, link.request_id)
    link.sequence += 1
    return ua_message(b"MSG", headers + body)


def opcua_handshake(link: OpcUaLink, endpoint: bytes, time: float) -> list[tuple[bool, bytes]]:
    hello = ua_message(b"HEL", struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + ua_string(endpoint))
    acknowledge = ua_message(b"ACK", struct.pack("<IIIII", 0, 65536, 65536, 0, 0))
    asymmetric = ua_string(SECURITY_POLICY_NONE) + ua_string(None) + ua_string(None)
    open_request = ua_message(
        b"OPN",
        struct.pack("<I", 0)
        + asymmetric
        + struct.pack("<II", link.sequence, link.request_id)
        + ua_type_id(OPEN_SECURE_CHANNEL_REQUEST)
        + request_header(time, 0)
        + struct.pack("<Iii", 0, 0, 1)  # ClientProtocolVersion, RequestType Issue, SecurityMode None
        + ua_string(b"")  # ClientNonce
        + struct.pack("<I", 3_600_000),
    )
    open_response = ua_message(
        b"OPN",
        struct.pack("<I", link.channel_id)
        + asymmetric
        + struct.pack("<II", link.sequence, link.request_id)
        + ua_type_id(OPEN_SECURE_CHANNEL_RESPONSE)
        + response_header(time, 0)
        + struct.pack("<III", 0, link.channel_id, link.token_id)
        + ua_datetime(time)
        + struct.pack("<I", 3_600_000)
        + ua_string(b""),  # ServerNonce
    )
    link.sequence += 1
    link.request_id += 1
    return [(True, hello), (False, acknowledge), (True, open_request), (False, open_response)]


# --------------------------------------------------------------------------------------------------
# The capture
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Expected:
    """What the generator wrote, for checking a dissector's summary."""

    packets: int = 0
    modbus_connections: int = 0
    opcua_connections: int = 0
    hosts: int = 0
    requests_by_function: Counter[str] = field(default_factory=Counter)
    responses_by_function: Counter[str] = field(default_factory=Counter)  # normal (non-exception) responses
    exceptions_by_code: Counter[str] = field(default_factory=Counter)
    exceptions_by_function: Counter[str] = field(default_factory=Counter)
    units: set[int] = field(default_factory=set)
    opcua_services: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, object]:
        return {
            "packets": self.packets,
            "hosts": self.hosts,
            "modbus_connections": self.modbus_connections,
            "opcua_connections": self.opcua_connections,
            "modbus": {
                "requests_by_function": dict(
                    sorted(self.requests_by_function.items(), key=lambda kv: int(kv[0]))
                ),
                "responses_by_function": dict(
                    sorted(self.responses_by_function.items(), key=lambda kv: int(kv[0]))
                ),
                "exceptions_by_code": dict(self.exceptions_by_code),
                "exceptions_by_function": dict(self.exceptions_by_function),
                "units": sorted(self.units),
                "requests": sum(self.requests_by_function.values()),
            },
            "opcua": {"services": dict(self.opcua_services)},
        }


class CaptureBuilder:
    def __init__(self, writer: PcapWriter, packets: int, seed: int, opcua: bool) -> None:
        self.writer = writer
        self.limit = packets
        self.rng = random.Random(seed)
        self.time = START_TIME
        self.expected = Expected()
        self.modbus_links: list[ModbusLink] = []
        self.opcua_links: list[OpcUaLink] = []
        self._plan(opcua)

    @property
    def full(self) -> bool:
        return self.writer.packets >= self.limit

    def emit(self, connection: TcpConnection, from_client: bool, flags: int, payload: bytes = b"") -> bool:
        """Write one segment; False (and nothing written) once the packet budget is spent."""
        if self.full:
            return False
        self.time += self.rng.uniform(0.00002, 0.0004)
        self.writer.write(self.time, connection.frame(from_client, flags, payload))
        return True

    def _plan(self, opcua: bool) -> None:
        rng = self.rng
        masters = [f"10.10.1.{index}" for index in range(1, 5)]
        slaves = [f"10.10.0.{index}" for index in range(10, 50)]
        hosts = set(masters) | set(slaves)
        slave_units = {slave: rng.sample(range(1, 248), rng.choice((1, 1, 1, 2, 3))) for slave in slaves}
        for master in masters:
            for slave in rng.sample(slaves, rng.randint(10, 12)):
                polls = []
                for unit in slave_units[slave]:
                    for _ in range(rng.randint(2, 4)):
                        function = rng.choice((3, 3, 3, 4, 4, 1))
                        quantity = rng.randint(1, 125) if function != 1 else rng.randint(1, 2000)
                        polls.append(Poll(function, unit, rng.randrange(0, 60000), quantity))
                port = rng.randint(49152, 65535)
                self.modbus_links.append(
                    ModbusLink(TcpConnection(rng, (master, port), (slave, MODBUS_PORT)), polls)
                )
        if opcua:
            clients, servers = ["10.10.2.1", "10.10.2.2"], ["10.10.3.1", "10.10.3.2"]
            hosts |= set(clients) | set(servers)
            for client in clients:
                for server in servers:
                    connection = TcpConnection(rng, (client, rng.randint(49152, 65535)), (server, OPCUA_PORT))
                    nodes = [rng.randint(1000, 60000) for _ in range(rng.randint(1, 8))]
                    self.opcua_links.append(
                        OpcUaLink(connection, nodes, rng.getrandbits(31) | 1, rng.getrandbits(31) | 1)
                    )
        self.expected.hosts = len(hosts)
        self.expected.modbus_connections = len(self.modbus_links)
        self.expected.opcua_connections = len(self.opcua_links)

    def build(self) -> Expected:
        links: list[ModbusLink | OpcUaLink] = [*self.modbus_links, *self.opcua_links]
        for link in links:
            self._handshake(link.connection)
        for link in self.opcua_links:
            endpoint = f"opc.tcp://{link.connection.server[0]}:{OPCUA_PORT}".encode()
            for from_client, message in opcua_handshake(link, endpoint, self.time):
                self.emit(link.connection, from_client, PSH | ACK, message)
        while not self.full:
            self.rng.shuffle(links)
            for link in links:
                if isinstance(link, ModbusLink):
                    self._modbus_transaction(link)
                elif self.rng.random() < 0.5:  # OPC UA clients poll about half as often
                    self._opcua_read(link)
                if self.full:
                    break
        self.writer.flush()
        self.expected.packets = self.writer.packets
        return self.expected

    def _handshake(self, connection: TcpConnection) -> None:
        self.emit(connection, True, SYN)
        self.emit(connection, False, SYN | ACK)
        self.emit(connection, True, ACK)

    def _modbus_transaction(self, link: ModbusLink) -> None:
        rng, expected = self.rng, self.expected
        batch = 1 if rng.random() > 0.05 else rng.randint(2, 3)  # pipelined requests in one segment
        polls = []
        for _ in range(batch):
            roll = rng.random()
            if roll < 0.01:
                poll = Poll(6, link.polls[0].unit, rng.randrange(0, 60000), 1)
            elif roll < 0.015:
                poll = Poll(16, link.polls[0].unit, rng.randrange(0, 60000), rng.randint(1, 123))
            else:
                poll = link.polls[link.next_poll]
                link.next_poll = (link.next_poll + 1) % len(link.polls)
            polls.append(poll)
        requests: list[bytes] = []
        answers: list[tuple[bytes, Poll, str | None]] = []  # response ADU, its poll, exception code
        for poll in polls:
            transaction = link.transaction
            link.transaction = (link.transaction + 1) & 0xFFFF
            request_pdu = modbus_request(poll, rng)
            requests.append(mbap(transaction, poll.unit, request_pdu))
            if poll.function in (3, 4) and rng.random() < 0.002:  # exception 2: illegal data address
                answers.append((mbap(transaction, poll.unit, bytes([poll.function | 0x80, 0x02])), poll, "2"))
            else:
                answers.append(
                    (mbap(transaction, poll.unit, modbus_response(poll, request_pdu, rng)), poll, None)
                )
        if not self.emit(link.connection, True, PSH | ACK, b"".join(requests)):
            return
        for poll in polls:
            expected.requests_by_function[str(poll.function)] += 1
            expected.units.add(poll.unit)
        payload = b"".join(adu for adu, _, _ in answers)
        if rng.random() < 0.02:  # a response split across two segments
            cut = rng.randint(1, len(payload) - 1)
            segments = [payload[:cut], payload[cut:]]
        else:
            segments = [payload]
        for segment in segments:
            if not self.emit(link.connection, False, PSH | ACK, segment):
                return  # the budget ran out mid-response: these responses are not counted
        for _, poll, exception_code in answers:
            if exception_code is None:
                expected.responses_by_function[str(poll.function)] += 1
            else:
                expected.exceptions_by_function[str(poll.function)] += 1
                expected.exceptions_by_code[exception_code] += 1
        if rng.random() < 0.3:
            self.emit(link.connection, True, ACK)

    def _opcua_read(self, link: OpcUaLink) -> None:
        connection = link.connection
        if not self.emit(connection, True, PSH | ACK, read_request(link, self.time)):
            return
        self.expected.opcua_services[str(READ_REQUEST)] += 1
        if self.emit(connection, False, PSH | ACK, read_response(link, self.time, self.rng)):
            self.expected.opcua_services[str(READ_RESPONSE)] += 1
        link.request_id += 1
        link.handle += 1
        if self.rng.random() < 0.3:
            self.emit(connection, True, ACK)


def build_capture(path: Path, packets: int = 500_000, seed: int = 1, opcua: bool = True) -> Expected:
    """Write the capture to ``path`` (exactly ``packets`` frames) and return what it contains."""
    with path.open("wb") as stream:
        writer = PcapWriter(stream)
        return CaptureBuilder(writer, packets, seed, opcua).build()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--packets", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--opcua", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    expected = build_capture(args.output, args.packets, args.seed, args.opcua)
    json.dump(expected.as_json(), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
