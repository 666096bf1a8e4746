"""FlowTable: keys, orientation, ids, lifecycle, timeouts, eviction (T4) and the family key (T10)."""

from __future__ import annotations

import socket

from sensor.flows.community import community_id
from sensor.flows.table import FlowTable
from sensor.limits import Limits
from sensor.records import (
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK,
    TCP_FIN,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    FlowSummary,
    Packet,
    ProtocolAnomaly,
    StreamClosed,
    StreamData,
)

CLIENT = socket.inet_aton("10.0.0.1")
SERVER = socket.inet_aton("10.0.0.2")
MODBUS_REQUEST = bytes.fromhex("000100000006010300000002")
MODBUS_RESPONSE = bytes.fromhex("00010000000701030400010002")


def tcp(
    ts: float,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    flags: int = TCP_ACK,
    seq: int = 0,
    ack: int = 0,
    payload: bytes = b"",
    version: int = 4,
    src_mac: bytes = b"",
    dst_mac: bytes = b"",
    vlans: tuple[int, ...] = (),
) -> Packet:
    return Packet(ts, version, src, dst, PROTO_TCP, sport, dport, payload, 54 + len(payload), seq, ack, flags,
                  65535, b"", src_mac, dst_mac, vlans)  # fmt: skip


def udp(ts: float, src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> Packet:
    return Packet(ts, 4, src, dst, PROTO_UDP, sport, dport, payload, 42 + len(payload))


def kinds(outputs: list[object]) -> list[str]:
    return [type(o).__name__ for o in outputs]


def handshake(table: FlowTable, ts: float = 1.0, cport: int = 40000, sport: int = 502) -> list[object]:
    out: list[object] = []
    out += table.track(tcp(ts, CLIENT, SERVER, cport, sport, TCP_SYN, seq=100))
    out += table.track(tcp(ts, SERVER, CLIENT, sport, cport, TCP_SYN | TCP_ACK, seq=900, ack=101))
    out += table.track(tcp(ts, CLIENT, SERVER, cport, sport, TCP_ACK, seq=101, ack=901))
    return out


def test_full_lifecycle_fin_lingers_then_summary() -> None:
    table = FlowTable(Limits(tcp_closed_timeout=10.0))
    assert handshake(table) == []
    out = table.track(
        tcp(2.0, CLIENT, SERVER, 40000, 502, TCP_ACK | TCP_PSH, seq=101, ack=901, payload=MODBUS_REQUEST)
    )
    assert len(out) == 1 and isinstance(out[0], StreamData)
    request = out[0]
    assert request.to_server and request.data == MODBUS_REQUEST and request.ts == 2.0
    out = table.track(
        tcp(2.1, SERVER, CLIENT, 502, 40000, TCP_ACK | TCP_PSH, seq=901, ack=113, payload=MODBUS_RESPONSE)
    )
    assert len(out) == 1 and isinstance(out[0], StreamData) and not out[0].to_server
    assert table.track(tcp(3.0, CLIENT, SERVER, 40000, 502, TCP_FIN | TCP_ACK, seq=113, ack=914)) == []
    assert table.track(tcp(3.0, SERVER, CLIENT, 502, 40000, TCP_FIN | TCP_ACK, seq=914, ack=114)) == []
    assert table.track(tcp(3.0, CLIENT, SERVER, 40000, 502, TCP_ACK, seq=114, ack=915)) == []  # absorbed
    assert len(table) == 1
    assert table.expire(12.9) == []
    out = table.expire(13.0)
    assert kinds(out) == ["StreamClosed", "FlowSummary"]
    closed, summary = out
    assert isinstance(closed, StreamClosed) and closed.reason == "fin"
    assert isinstance(summary, FlowSummary)
    assert (summary.state, summary.reason, summary.start, summary.end) == ("closed", "fin", 1.0, 3.0)
    assert (summary.pkts_toserver, summary.pkts_toclient) == (5, 3)
    assert summary.bytes_toserver == 5 * 54 + len(MODBUS_REQUEST)
    assert summary.flow is request.flow
    assert len(table) == 0
    assert table.total_flows == 1


def test_flowref_orientation_and_text_from_syn() -> None:
    table = FlowTable()
    mac_c, mac_s = bytes.fromhex("02000000000c"), bytes.fromhex("02000000000d")
    table.track(
        tcp(1.0, CLIENT, SERVER, 40000, 502, TCP_SYN, seq=1, src_mac=mac_c, dst_mac=mac_s, vlans=(10, 20))
    )
    out = table.track(tcp(1.1, CLIENT, SERVER, 40000, 502, TCP_PSH | TCP_ACK, seq=2, payload=b"x" * 4))
    ref = out[0].flow
    assert (ref.client_ip, ref.client_port, ref.server_ip, ref.server_port) == (
        "10.0.0.1",
        40000,
        "10.0.0.2",
        502,
    )
    assert (ref.client_mac, ref.server_mac, ref.vlans) == ("02:00:00:00:00:0c", "02:00:00:00:00:0d", (10, 20))
    assert ref.transport == "tcp"
    assert ref.community_id == community_id(CLIENT, SERVER, 6, 40000, 502)
    assert 0 <= ref.flow_id < 2**63


def test_synack_first_makes_its_sender_the_server() -> None:
    table = FlowTable()
    table.track(tcp(1.0, SERVER, CLIENT, 6000, 7000, TCP_SYN | TCP_ACK, seq=5, ack=1))
    out = table.track(tcp(1.1, CLIENT, SERVER, 7000, 6000, TCP_ACK | TCP_PSH, seq=1, ack=6, payload=b"hi"))
    ref = out[0].flow
    assert (ref.client_port, ref.server_port) == (7000, 6000)
    assert out[0].to_server


def test_midstream_orientation_by_server_port_then_lower_port() -> None:
    table = FlowTable()
    out = table.track(tcp(1.0, SERVER, CLIENT, 502, 50000, TCP_ACK | TCP_PSH, seq=9, payload=MODBUS_RESPONSE))
    assert out[0].flow.server_port == 502 and not out[0].to_server
    out = table.track(tcp(1.0, CLIENT, SERVER, 50001, 9000, TCP_ACK | TCP_PSH, seq=9, payload=b"abc"))
    assert out[0].flow.server_port == 9000 and out[0].to_server
    out = table.track(tcp(1.0, CLIENT, SERVER, 9001, 60001, TCP_ACK | TCP_PSH, seq=9, payload=b"abc"))
    assert out[0].flow.server_port == 9001 and not out[0].to_server


def test_custom_server_ports() -> None:
    table = FlowTable(server_ports=frozenset({60001}))
    out = table.track(tcp(1.0, CLIENT, SERVER, 9001, 60001, TCP_ACK | TCP_PSH, seq=9, payload=b"abc"))
    assert out[0].flow.server_port == 60001


def test_udp_datagrams_and_orientation() -> None:
    table = FlowTable()
    out = table.track(udp(1.0, SERVER, CLIENT, 47808, 47809, b"\x81\x0a"))
    assert len(out) == 1 and isinstance(out[0], StreamData)
    assert out[0].flow.transport == "udp" and out[0].flow.server_port == 47808 and not out[0].to_server
    out = table.track(udp(1.1, CLIENT, SERVER, 47809, 47808, b"\x81\x0b"))
    assert out[0].to_server and out[0].data == b"\x81\x0b"
    assert table.track(udp(1.2, CLIENT, SERVER, 47809, 47808, b"")) == []
    assert len(table) == 1
    out = table.flush(5.0)
    summary = out[-1]
    assert isinstance(summary, FlowSummary)
    assert (summary.pkts_toserver, summary.pkts_toclient, summary.state, summary.reason) == (
        2,
        1,
        "established",
        "shutdown",
    )


def test_icmp_flow_without_stream_data_uses_type_code_for_community_id() -> None:
    table = FlowTable()
    echo = Packet(1.0, 4, CLIENT, SERVER, 1, 0, 0, b"\x08\x00\x00\x00ping", 60)
    assert table.track(echo) == []
    summary = table.flush(2.0)[-1]
    assert isinstance(summary, FlowSummary)
    assert summary.flow.transport == "icmp"
    assert summary.flow.community_id == community_id(CLIENT, SERVER, 1, 8, 0)


def test_flow_id_is_deterministic_and_depends_on_first_time() -> None:
    def first_ref(ts: float) -> int:
        table = FlowTable()
        return table.track(tcp(ts, CLIENT, SERVER, 1, 502, TCP_PSH | TCP_ACK, seq=1, payload=b"ab"))[
            0
        ].flow.flow_id

    assert first_ref(1.0) == first_ref(1.0)
    assert first_ref(1.0) != first_ref(2.0)


def test_idle_timeouts_depend_on_state() -> None:
    limits = Limits(tcp_unestablished_timeout=30.0, tcp_established_timeout=600.0, udp_timeout=120.0)
    table = FlowTable(limits)
    table.track(tcp(0.0, CLIENT, SERVER, 1111, 502, TCP_SYN, seq=1))  # never answered
    handshake(table, ts=0.0)
    table.track(udp(0.0, CLIENT, SERVER, 5000, 47808, b"x"))
    assert len(table) == 3
    out = table.expire(30.0)
    assert [o.reason for o in out if isinstance(o, StreamClosed)] == ["timeout"]
    summary = out[-1]
    assert isinstance(summary, FlowSummary) and summary.state == "new" and summary.flow.client_port == 1111
    assert len(table) == 2
    assert len(table.expire(120.0)) == 2 and len(table) == 1
    out = table.expire(600.0)
    assert isinstance(out[-1], FlowSummary) and out[-1].state == "established" and out[-1].reason == "timeout"
    assert len(table) == 0 and table.counters["flows.timeout"] == 3


def test_activity_postpones_timeout() -> None:
    table = FlowTable(Limits(tcp_established_timeout=100.0))
    handshake(table, ts=0.0)
    for second in range(1, 300, 50):
        table.track(tcp(float(second), CLIENT, SERVER, 40000, 502, TCP_ACK, seq=101, ack=901))
        assert table.expire(float(second)) == []
    assert len(table) == 1


def test_rst_closes_and_port_reuse_makes_a_new_flow() -> None:
    table = FlowTable(Limits(tcp_closed_timeout=10.0))
    handshake(table, ts=1.0)
    assert table.track(tcp(2.0, SERVER, CLIENT, 502, 40000, TCP_RST, seq=901)) == []
    out = table.track(tcp(3.0, CLIENT, SERVER, 40000, 502, TCP_SYN, seq=5000))
    assert kinds(out) == ["StreamClosed", "FlowSummary"]
    assert out[0].reason == "rst"
    assert len(table) == 1 and table.total_flows == 2


def test_retransmitted_syn_after_rst_is_the_same_flow() -> None:
    table = FlowTable()
    for attempt in range(3):
        ts = 1.0 + attempt * 0.5
        assert table.track(tcp(ts, CLIENT, SERVER, 57054, 502, TCP_SYN, seq=3289323086)) == []
        assert (
            table.track(tcp(ts, SERVER, CLIENT, 502, 57054, TCP_RST | TCP_ACK, seq=0, ack=3289323087)) == []
        )
    assert table.total_flows == 1


def test_flush_ends_everything() -> None:
    table = FlowTable()
    handshake(table)
    table.track(udp(1.0, CLIENT, SERVER, 5000, 47808, b"x"))
    out = table.flush(9.0)
    assert kinds(out) == ["StreamClosed", "FlowSummary"] * 2
    assert {o.reason for o in out if isinstance(o, StreamClosed)} == {"shutdown"}
    assert len(table) == 0


def test_lru_eviction_at_max_flows() -> None:
    table = FlowTable(Limits(max_flows=10, emergency_flows=10))
    for port in range(20):
        handshake(table, ts=float(port), cport=10000 + port)
    assert len(table) == 10
    assert table.counters["flows.evicted"] == 10
    ports = sorted(o.flow.client_port for o in table.flush(99.0) if isinstance(o, FlowSummary))
    assert ports == list(range(10010, 10020))


def test_T4_syn_flood_emergency_mode_keeps_established_modbus_flow() -> None:
    limits = Limits(max_flows=1000, emergency_flows=900)
    table = FlowTable(limits)
    handshake(table, ts=0.0, cport=40000)
    seq, delivered, peak = 101, 0, 0
    for index in range(20_000):
        ts = 1.0 + index * 0.0001
        src = bytes((10, 1 + (index >> 16), (index >> 8) & 0xFF, index & 0xFF))
        table.track(tcp(ts, src, SERVER, 1024 + index % 60000, 502, TCP_SYN, seq=index))
        peak = max(peak, len(table))
        if index % 100 == 0:
            out = table.track(tcp(ts, CLIENT, SERVER, 40000, 502, TCP_PSH | TCP_ACK, seq=seq, ack=901,
                                  payload=MODBUS_REQUEST))  # fmt: skip
            seq += len(MODBUS_REQUEST)
            assert [type(o) for o in out] == [StreamData]
            delivered += 1
    assert peak <= limits.max_flows
    assert len(table) <= limits.emergency_flows
    assert table.counters["flow.emergency_entered"] >= 1
    assert table.counters["flows.evicted"] >= 20_000 - limits.emergency_flows
    assert delivered == 200
    assert table.emergency
    survivors = [o for o in table.flush(10.0) if isinstance(o, FlowSummary) and o.state == "established"]
    assert [s.flow.client_port for s in survivors] == [40000]
    assert survivors[0].pkts_toserver == 2 + 200


def test_T4_emergency_mode_ends_when_the_table_drains() -> None:
    table = FlowTable(Limits(max_flows=100, emergency_flows=50, tcp_unestablished_timeout=5.0))
    for index in range(80):
        table.track(tcp(0.0, CLIENT, SERVER, 2000 + index, 502, TCP_SYN, seq=1))
    assert table.emergency and table.counters["flow.emergency_entered"] == 1
    table.expire(10.0)
    assert not table.emergency and len(table) == 0
    for index in range(80):
        table.track(tcp(11.0, CLIENT, SERVER, 3000 + index, 502, TCP_SYN, seq=1))
    assert table.counters["flow.emergency_entered"] == 2


def test_T10_ipv4_and_ipv6_with_colliding_address_words_stay_separate() -> None:
    table = FlowTable()
    v4_client, v4_server = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    # IPv4-compatible and IPv4-mapped IPv6 addresses end in the same 32-bit words as the IPv4 pair
    for prefix in (b"\x00" * 12, b"\x00" * 10 + b"\xff\xff"):
        v6_client, v6_server = prefix + v4_client, prefix + v4_server
        table.track(
            tcp(1.0, v6_client, v6_server, 40000, 502, TCP_PSH | TCP_ACK, seq=1, payload=b"six", version=6)
        )
    out4 = table.track(tcp(1.0, v4_client, v4_server, 40000, 502, TCP_PSH | TCP_ACK, seq=1, payload=b"four"))
    # and the same packed bytes under two address families (the key itself carries the family)
    out_family = table.track(
        tcp(1.0, v4_client, v4_server, 40000, 502, TCP_PSH | TCP_ACK, seq=1, payload=b"xy", version=6)
    )
    assert len(table) == 4 and table.total_flows == 4
    assert out4[0].data == b"four" and out4[0].flow.client_ip == "10.0.0.1"
    assert out_family[0].data == b"xy" and out_family[0].flow is not out4[0].flow
    ids = {o.flow.flow_id for o in table.flush(2.0) if isinstance(o, FlowSummary)}
    assert len(ids) == 4


def test_suspicious_rst_does_not_tear_down() -> None:
    table = FlowTable()
    handshake(table)
    out = table.track(tcp(1.5, SERVER, CLIENT, 502, 40000, TCP_RST, seq=901 + 10_000_000))
    assert [o.kind for o in out if isinstance(o, ProtocolAnomaly)] == ["tcp.suspicious_rst"]
    out = table.track(
        tcp(2.0, CLIENT, SERVER, 40000, 502, TCP_PSH | TCP_ACK, seq=101, payload=MODBUS_REQUEST)
    )
    assert kinds(out) == ["StreamData"]
    assert table.counters["tcp.suspicious_rst"] == 1
