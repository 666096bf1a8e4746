"""Test helpers for the MQTT/TLS dissector tests: feeding sessions and reading pcaps.

``tcp_streams`` is a stand-in for the pipeline while it is being built: it groups TCP payloads of a
pcap per connection and direction (the side on a known server port is the server), orders them by
sequence number and drops retransmitted bytes. It is not a reassembler: no gaps, no overlaps with
different bytes, which the public captures do not have.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from sensor.dissectors.base import Dissector, DissectorSession
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import AppEvent, FlowRef, ProtocolAnomaly

REPO = Path(__file__).resolve().parents[5]
PUBLIC = REPO.parent / "shared" / "pcaps" / "public"
FLOW = FlowRef(1, "1:test", "tcp", "10.0.0.1", 40000, "10.0.0.2", 1883)

Chunk = tuple[bool, bytes]  # (to_server, bytes)


def feed_all(session: DissectorSession, chunks: Iterable[Chunk], ts: float = 1.0) -> list[AppEvent]:
    out: list[AppEvent] = []
    for to_server, data in chunks:
        out.extend(session.feed(data, to_server, ts))
    out.extend(session.close(ts))
    return out


def bytewise(chunks: Iterable[Chunk]) -> list[Chunk]:
    return [(d, data[i : i + 1]) for d, data in chunks for i in range(len(data))]


def summarize(events: Sequence[AppEvent]) -> list[Any]:
    """A comparable view of events (bodies as JSON, anomalies by kind)."""
    out: list[Any] = []
    for e in events:
        if isinstance(e, ProtocolAnomaly):
            out.append(("anomaly", e.kind, e.to_server))
        else:
            out.append((e.event_type, e.to_server, json.dumps(e.eve_body(), sort_keys=True)))
    return out


def kinds(events: Sequence[AppEvent]) -> list[str]:
    return [e.kind for e in events if isinstance(e, ProtocolAnomaly)]


def tcp_streams(
    path: Path, server_ports: frozenset[int]
) -> list[tuple[FlowRef, list[tuple[bool, bytes, float]]]]:
    """TCP payload chunks per connection in capture order, retransmissions dropped (see module doc)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import PcapReader

    flows: dict[tuple[Any, ...], tuple[FlowRef, list[tuple[bool, bytes, float]], dict[bool, int]]] = {}
    with PcapReader(str(path)) as reader:
        for pkt in reader:
            if TCP not in pkt:
                continue
            if IP in pkt:
                ip = pkt[IP]
            elif IPv6 in pkt:
                ip = pkt[IPv6]
            else:
                continue
            tcp = pkt[TCP]
            if tcp.dport in server_ports:
                to_server = True
                key = (ip.src, tcp.sport, ip.dst, tcp.dport)
            elif tcp.sport in server_ports:
                to_server = False
                key = (ip.dst, tcp.dport, ip.src, tcp.sport)
            else:
                continue
            payload = bytes(tcp.payload)
            if key not in flows:
                ref = FlowRef(len(flows) + 1, "1:test", "tcp", str(key[0]), key[1], str(key[2]), key[3])
                flows[key] = (ref, [], {})
            ref, chunks, next_seq = flows[key]
            seq = int(tcp.seq)
            if tcp.flags & 0x02:  # SYN takes one sequence number
                next_seq[to_server] = (seq + 1) & 0xFFFFFFFF
                continue
            if not payload:
                continue
            expected = next_seq.get(to_server)
            if expected is not None:
                delta = (seq - expected) & 0xFFFFFFFF
                if delta >= 0x80000000:  # starts before what we have: drop the repeated part
                    overlap = (expected - seq) & 0xFFFFFFFF
                    if overlap >= len(payload):
                        continue
                    payload = payload[overlap:]
                    seq = expected
            next_seq[to_server] = (seq + len(payload)) & 0xFFFFFFFF
            chunks.append((to_server, payload, float(pkt.time)))
    return [(ref, chunks) for ref, chunks, _ in flows.values()]


def run_pcap(
    path: Path, dissector: Dissector, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[AppEvent], dict[str, Any]]:
    """Every event of ``dissector`` over a pcap (via tcp_streams) and its stats section."""
    stats = dissector.stats()
    events: list[AppEvent] = []
    for flow, chunks in tcp_streams(path, dissector.ports):
        session = dissector.session(flow, limits)
        last = 0.0
        for to_server, data, ts in chunks:
            events.extend(session.feed(data, to_server, ts))
            last = ts
        events.extend(session.close(last))
    for e in events:
        stats.observe(e)
    return events, stats.section()


def cli_summary(path: Path) -> dict[str, Any] | None:
    """The real ``zonewarden replay PCAP --summary-json`` output, or None while the CLI cannot run."""
    try:
        from sensor.cli import main
    except ImportError:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "summary.json"
        with redirect_stdout(io.StringIO()):
            rc = main(["replay", str(path), "--summary-json", str(out)])
        if rc != 0 or not out.exists():
            return None
        data: dict[str, Any] = json.loads(out.read_text())
        return data


# --- MQTT packet builders (MQTT 5.0 §1.5, §2.1) -----------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mstr(s: str | bytes) -> bytes:
    raw = s.encode() if isinstance(s, str) else s
    return len(raw).to_bytes(2, "big") + raw


def props(*items: bytes) -> bytes:
    """A properties block from already encoded (id + value) items."""
    body = b"".join(items)
    return varint(len(body)) + body


def p_u16(pid: int, v: int) -> bytes:
    return bytes([pid]) + v.to_bytes(2, "big")


def p_u32(pid: int, v: int) -> bytes:
    return bytes([pid]) + v.to_bytes(4, "big")


def p_str(pid: int, s: str) -> bytes:
    return bytes([pid]) + mstr(s)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect(
    client_id: str = "c1",
    level: int = 4,
    user: str | None = None,
    password: bytes | None = None,
    keep_alive: int = 60,
    connect_props: bytes = b"",
    will: tuple[str, bytes, int, bool] | None = None,
    will_props: bytes = b"",
) -> bytes:
    name = b"MQIsdp" if level == 3 else b"MQTT"
    flags = 0x02
    if user is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    if will is not None:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    body = mstr(name) + bytes([level, flags]) + keep_alive.to_bytes(2, "big")
    if level == 5:
        body += connect_props or props()
    body += mstr(client_id)
    if will is not None:
        if level == 5:
            body += will_props or props()
        body += mstr(will[0]) + mstr(will[1])
    if user is not None:
        body += mstr(user)
    if password is not None:
        body += mstr(password)
    return packet(0x10, body)


def connack(code: int = 0, level: int = 4, connack_props: bytes = b"") -> bytes:
    body = bytes([0, code])
    if level == 5:
        body += connack_props or props()
    return packet(0x20, body)


def publish(
    topic: str | bytes,
    payload: bytes = b"x",
    qos: int = 0,
    packet_id: int = 1,
    level: int = 4,
    publish_props: bytes = b"",
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    body = mstr(topic)
    if qos:
        body += packet_id.to_bytes(2, "big")
    if level == 5:
        body += publish_props or props()
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    return packet(first, body + payload)


def ack(ptype: int, packet_id: int, code: int | None = None) -> bytes:
    body = packet_id.to_bytes(2, "big")
    if code is not None:
        body += bytes([code])
    return packet((ptype << 4) | (2 if ptype == 6 else 0), body)


def subscribe(packet_id: int, filters: Sequence[tuple[str | bytes, int]], level: int = 4) -> bytes:
    body = packet_id.to_bytes(2, "big") + (props() if level == 5 else b"")
    for f, opts in filters:
        body += mstr(f) + bytes([opts])
    return packet(0x82, body)


def split_invariant(make_session: Any, chunks: Sequence[Chunk], trailing: bytes = b"\x30") -> list[AppEvent]:
    """Feed ``chunks`` whole, byte by byte and followed by a partial packet: the events must agree."""
    whole = feed_all(make_session(), chunks)
    by_byte = feed_all(make_session(), bytewise(chunks))
    last_dir = chunks[-1][0] if chunks else True
    with_trailing = feed_all(make_session(), [*chunks, (last_dir, trailing)])
    assert summarize(whole) == summarize(by_byte)
    assert summarize(whole) == summarize(with_trailing)
    return whole
