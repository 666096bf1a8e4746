"""Unit tests of sensor.deep without tshark: the field-stream parser, the flow aggregator, and the
process handling against fake tshark executables (hang, garbage output, failure)."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.deep import (
    AGGREGATOR,
    BACNET_OBJECT_FIELDS,
    BASE_FIELDS,
    CIP_REVISION_FIELDS,
    DNP3_FIELDS,
    IDENTITY_FIELDS,
    MAX_IDENTITY_VALUES,
    WIRESHARK_LAYERS,
    FlowAggregator,
    OtherProtocolFlow,
    find_tshark,
    identity_columns_for,
    parse_line,
    scan_captures,
    summarize,
    tshark_available,
)
from sensor.limits import Limits

ALL_FIELDS = frozenset(
    [spec.wireshark for spec in IDENTITY_FIELDS] + [*DNP3_FIELDS, *BACNET_OBJECT_FIELDS, *CIP_REVISION_FIELDS]
)
COLUMNS = identity_columns_for(ALL_FIELDS)


def line(
    protocols: str,
    *,
    time: float = 100.0,
    eth: tuple[str, str] = ("02:00:00:00:00:01", "02:00:00:00:00:02"),
    ip: tuple[str, str] | None = ("10.0.0.1", "10.0.0.2"),
    ipv6: tuple[str, str] | None = None,
    tcp: tuple[int, int, int] | None = None,
    udp: tuple[int, int] | None = None,
    data: str = "",
    **identity: str,
) -> str:
    """One ``tshark -T fields`` line with the columns sensor.deep asks for (identity keys use _ for .)."""
    cells = dict.fromkeys(BASE_FIELDS, "")
    cells["frame.time_epoch"] = f"{time:.9f}"
    cells["frame.protocols"] = protocols
    cells["eth.src"], cells["eth.dst"] = eth
    if ip:
        cells["ip.src"], cells["ip.dst"] = ip
    if ipv6:
        cells["ipv6.src"], cells["ipv6.dst"] = ipv6
    if tcp:
        cells["tcp.srcport"], cells["tcp.dstport"] = str(tcp[0]), str(tcp[1])
        cells["tcp.flags"] = f"0x{tcp[2]:04x}"
    if udp:
        cells["udp.srcport"], cells["udp.dstport"] = str(udp[0]), str(udp[1])
    cells["data.data"] = data
    identity_cells = dict.fromkeys(COLUMNS, "")
    for key, value in identity.items():
        name = next(column for column in COLUMNS if column.replace(".", "_") == key)
        identity_cells[name] = value
    return "\t".join([*cells.values(), *identity_cells.values()]) + "\n"


def aggregate(*lines: str, **options: object) -> FlowAggregator:
    aggregator = FlowAggregator(COLUMNS, **options)  # type: ignore[arg-type]
    for text in lines:
        aggregator.feed_line(text)
    return aggregator


def single(aggregator: FlowAggregator) -> OtherProtocolFlow:
    flows = aggregator.flows()
    assert len(flows) == 1, flows
    return flows[0]


TCP_S7 = "eth:ethertype:ip:tcp:tpkt:cotp"
SYN, SYN_ACK, ACK, PSH_ACK = 0x002, 0x012, 0x010, 0x018


# --------------------------------------------------------------------------------------------------
# parse_line
# --------------------------------------------------------------------------------------------------


def test_parse_tcp_line() -> None:
    packet = parse_line(line("eth:ethertype:ip:tcp:dnp3", tcp=(40001, 20000, PSH_ACK)), COLUMNS)
    assert packet is not None
    assert (packet.transport, packet.source, packet.destination) == (
        "tcp",
        ("10.0.0.1", 40001),
        ("10.0.0.2", 20000),
    )
    assert packet.tcp_flags == PSH_ACK
    assert packet.layers[-1] == "dnp3"
    assert packet.fields == {}


def test_parse_takes_innermost_ip_of_a_tunnel() -> None:
    text = line("eth:ethertype:ip:gre:ip:udp:bvlc:bacnet", ip=("1.1.1.1", "2.2.2.2"), udp=(47808, 47808))
    text = text.replace("1.1.1.1", f"1.1.1.1{AGGREGATOR}10.0.0.5").replace(
        "2.2.2.2", f"2.2.2.2{AGGREGATOR}10.0.0.6"
    )
    packet = parse_line(text, COLUMNS)
    assert packet is not None
    assert (packet.source, packet.destination) == (("10.0.0.5", 47808), ("10.0.0.6", 47808))


def test_parse_ipv6_and_ethernet_only() -> None:
    packet = parse_line(
        line("eth:ethertype:ipv6:udp:bvlc", ip=None, ipv6=("fe80::1", "ff02::1"), udp=(1, 47808)), COLUMNS
    )
    assert packet is not None and packet.source == ("fe80::1", 1)
    packet = parse_line(line("eth:ethertype:pn_rt:pn_dcp", ip=None), COLUMNS)
    assert packet is not None
    assert (packet.transport, packet.source, packet.destination) == (
        "eth",
        ("02:00:00:00:00:01", 0),
        ("02:00:00:00:00:02", 0),
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "only\tthree\tcells\n",
        line("eth:ethertype:ip:icmp:ip:udp:bvlc:bacnet", udp=(47808, 47808)),  # quoted inner header
        line("eth:ethertype:ip:gre", ip=("10.0.0.1", "10.0.0.2")),  # no ports
        line("eth:ethertype:ip:tcp", tcp=(70000, 102, ACK)),  # impossible port
        line("eth:ethertype:ip:tcp:dnp3", tcp=(1, 2, ACK)).replace("100.000000000", "not-a-time"),
        line("sll:ip", ip=None, eth=("", "")),  # no address at all
    ],
)
def test_parse_rejects_lines_that_cannot_be_a_flow(text: str) -> None:
    assert parse_line(text, COLUMNS) is None


def test_parse_iso_payload_only_after_cotp() -> None:
    packet = parse_line(line(TCP_S7 + ":data", tcp=(49000, 102, PSH_ACK), data="72020012"), COLUMNS)
    assert packet is not None and packet.iso_payload_id == 0x72
    packet = parse_line(
        line("eth:ethertype:ip:tcp:data", tcp=(49000, 9999, PSH_ACK), data="72020012"), COLUMNS
    )
    assert packet is not None and packet.iso_payload_id is None
    packet = parse_line(line(TCP_S7 + ":data", tcp=(49000, 102, PSH_ACK), data="zz"), COLUMNS)
    assert packet is not None and packet.iso_payload_id is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text(alphabet=st.sampled_from("\t\r:.0123456789abx eth:ip:tcp:udp:dnp3:cotp"), max_size=200))
)
def test_random_lines_never_raise(lines: list[str]) -> None:
    aggregator = aggregate(*lines)
    aggregator.flows()
    assert aggregator.packets + aggregator.lines_skipped == len(lines)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["eth:ethertype:ip:tcp:dnp3", TCP_S7, "eth:ethertype:ip:tcp", "eth:ip:tcp:mbtcp:modbus"]
            ),
            st.integers(0, 3),
            st.integers(0, 3),
            st.sampled_from([SYN, SYN_ACK, ACK, PSH_ACK]),
            st.text(max_size=300),
        ),
        max_size=60,
    )
)
def test_random_flows_stay_bounded(rows: list[tuple[str, int, int, int, str]]) -> None:
    lines = [
        line(protocols, tcp=(1000 + a, 102 + b, flags), dnp3_src=name, s7comm_szl_xy11_0001_anz=name)
        for protocols, a, b, flags, name in rows
    ]
    aggregator = aggregate(*lines, max_flows=5, max_field_chars=32)
    assert aggregator.peak_tracked_flows <= 5
    for flow in aggregator.flows():
        assert flow.packets >= flow.protocol_packets >= 1
        for value in flow.identity.values():
            assert len(value) <= MAX_IDENTITY_VALUES * (32 + 3)


# --------------------------------------------------------------------------------------------------
# FlowAggregator
# --------------------------------------------------------------------------------------------------


def test_flow_counts_every_frame_and_names_the_client_from_the_syn() -> None:
    server, client = ("10.0.0.2", 102), ("10.0.0.1", 49000)
    lines = [
        line("eth:ethertype:ip:tcp", time=1.0, ip=(client[0], server[0]), tcp=(client[1], server[1], SYN)),
        line(
            "eth:ethertype:ip:tcp", time=2.0, ip=(server[0], client[0]), tcp=(server[1], client[1], SYN_ACK)
        ),
        line(TCP_S7 + ":s7comm", time=3.0, ip=(client[0], server[0]), tcp=(client[1], server[1], PSH_ACK)),
        line("eth:ethertype:ip:tcp", time=0.5, ip=(server[0], client[0]), tcp=(server[1], client[1], ACK)),
    ]
    flow = single(aggregate(*lines))
    assert (flow.protocol, flow.client_ip, flow.client_port, flow.server_ip, flow.server_port) == (
        "s7comm",
        *client,
        *server,
    )
    assert (flow.packets, flow.protocol_packets) == (4, 1)
    assert (flow.first_ts, flow.last_ts) == (0.5, 3.0)  # time going backwards is clamped, not trusted
    assert flow.wireshark_layers == ("cotp", "s7comm", "tpkt")


def test_syn_ack_sender_is_the_server() -> None:
    lines = [
        line("eth:ethertype:ip:tcp", ip=("10.0.0.2", "10.0.0.1"), tcp=(5000, 6000, SYN_ACK)),
        line("eth:ethertype:ip:tcp:dnp3", ip=("10.0.0.1", "10.0.0.2"), tcp=(6000, 5000, PSH_ACK)),
    ]
    flow = single(aggregate(*lines))
    assert (flow.client_ip, flow.server_ip, flow.server_port) == ("10.0.0.1", "10.0.0.2", 5000)


def test_mid_stream_flow_server_is_on_the_well_known_port() -> None:
    # 20000 is DNP3's port even though it is higher than the client's ephemeral 1500
    flow = single(
        aggregate(line("eth:ethertype:ip:tcp:dnp3", ip=("10.0.0.2", "10.0.0.1"), tcp=(20000, 1500, ACK)))
    )
    assert (flow.server_ip, flow.server_port, flow.client_port) == ("10.0.0.2", 20000, 1500)
    # no known port: the lower port listens
    flow = single(
        aggregate(line("eth:ethertype:ip:tcp:dnp3", ip=("10.0.0.1", "10.0.0.2"), tcp=(50000, 30000, ACK)))
    )
    assert (flow.server_ip, flow.server_port) == ("10.0.0.2", 30000)
    flow = single(
        aggregate(line("eth:ethertype:ip:tcp:dnp3", ip=("10.0.0.2", "10.0.0.1"), tcp=(50000, 30000, ACK)))
    )
    assert (flow.server_ip, flow.server_port, flow.client_ip) == ("10.0.0.1", 30000, "10.0.0.2")


def test_ethernet_flow_client_is_the_first_sender() -> None:
    flow = single(
        aggregate(
            line(
                "eth:ethertype:goose",
                ip=None,
                eth=("02:00:00:00:00:09", "01:0c:cd:01:00:01"),
                goose_gocbRef="IED1/LLN0$GO$gcb1",
            )
        )
    )
    assert (flow.protocol, flow.transport) == ("goose", "eth")
    assert (flow.client_ip, flow.server_ip, flow.client_port, flow.server_port) == (
        "02:00:00:00:00:09",
        "01:0c:cd:01:00:01",
        0,
        0,
    )
    assert flow.identity == {"gocb_ref": "IED1/LLN0$GO$gcb1"}


def test_cotp_refined_by_payload_and_by_dissector() -> None:
    base = {"tcp": (49000, 102, PSH_ACK)}
    generic = single(aggregate(line(TCP_S7, **base)))  # type: ignore[arg-type]
    assert generic.protocol == "cotp"
    plus = single(aggregate(line(TCP_S7, **base), line(TCP_S7 + ":data", data="72ff", **base)))  # type: ignore[arg-type]
    assert (plus.protocol, plus.protocol_packets) == ("s7comm_plus", 2)
    classic = single(aggregate(line(TCP_S7 + ":data", data="3201", **base)))  # type: ignore[arg-type]
    assert classic.protocol == "s7comm"
    mms = single(aggregate(line(TCP_S7 + ":ses:pres:acse:mms", **base), line(TCP_S7, **base)))  # type: ignore[arg-type]
    assert mms.protocol == "mms"


def test_most_frequent_specific_protocol_names_the_flow() -> None:
    base = {"tcp": (49000, 20000, PSH_ACK)}
    lines = [line("eth:ethertype:ip:tcp:dnp3", **base) for _ in range(5)]  # type: ignore[arg-type]
    lines.append(line("eth:ethertype:ip:tcp:mbtcp:modbus", **base))  # type: ignore[arg-type]
    assert single(aggregate(*lines)).protocol == "dnp3"
    # a flow mostly dissected as a native protocol is left to the native dissector
    lines = [line("eth:ethertype:ip:tcp:mbtcp:modbus", **base) for _ in range(5)]  # type: ignore[arg-type]
    lines.append(line("eth:ethertype:ip:tcp:dnp3", **base))  # type: ignore[arg-type]
    assert aggregate(*lines).flows() == []


def test_enip_outranks_the_cip_it_carries() -> None:
    flow = single(aggregate(line("eth:ethertype:ip:tcp:enip:cip:cipcm", tcp=(50000, 44818, PSH_ACK))))
    assert flow.protocol == "enip"
    flow = single(aggregate(line("eth:ethertype:ip:udp:cipio", udp=(2222, 2222))))
    assert flow.protocol == "cip"


def test_skip_accepts_ids_and_wireshark_layer_names() -> None:
    text = line("eth:ethertype:ip:udp:bvlc:bacnet:bacapp", udp=(47808, 47808))
    assert single(aggregate(text)).protocol == "bacnet"
    assert aggregate(text, skip=frozenset({"bacnet"})).flows() == []
    assert aggregate(text, skip=frozenset({"bacapp"})).flows() == []
    assert (
        single(aggregate(line("eth:ethertype:ip:tcp:opcua", tcp=(1, 4840, ACK)), skip=frozenset())).protocol
        == "opcua"
    )


def test_identity_fields_rendered() -> None:
    flow = single(
        aggregate(
            line(
                "eth:ethertype:ip:udp:enip",
                udp=(44818, 50000),
                enip_lir_vendor="0x0001",
                enip_lir_revision="5131",
                enip_lir_serial="0x00c0ffee",
                enip_lir_name="1756-L85E/B",
            )
        )
    )
    assert flow.identity == {
        "vendor_id": "1",
        "revision": "20.11",
        "serial_number": "0x00c0ffee",
        "product_name": "1756-L85E/B",
    }


def test_identity_from_explicit_cip_and_s7_szl() -> None:
    flow = single(
        aggregate(
            line(
                "eth:ethertype:ip:tcp:enip:cip",
                tcp=(44818, 50000, PSH_ACK),
                cip_id_major_rev="32",
                cip_id_minor_rev="11",
                cip_id_product_name="1756-EN2T/D",
            )
        )
    )
    assert flow.identity == {"product_name": "1756-EN2T/D", "revision": "32.11"}
    flow = single(
        aggregate(
            line(
                TCP_S7 + ":s7comm",
                tcp=(102, 49000, PSH_ACK),
                s7comm_szl_xy11_0001_anz=AGGREGATOR.join(
                    ["6ES7 315-2EH14-0AB0 ", "6ES7 315-2EH14-0AB0 ", "Boot"]
                ),
                s7comm_szl_001c_0007_cputypname="CPU 315-2 PN/DP",
            )
        )
    )
    assert flow.identity == {
        "order_number": "6ES7 315-2EH14-0AB0  | Boot",
        "module_type_name": "CPU 315-2 PN/DP",
    }


def test_dnp3_addresses_follow_the_direction_bit() -> None:
    lines = [
        # from the master (DIR=1): source is the master; two frames in one segment
        line(
            "eth:ethertype:ip:tcp:dnp3",
            tcp=(40000, 20000, PSH_ACK),
            dnp3_src=f"3{AGGREGATOR}3",
            dnp3_dst=f"10{AGGREGATOR}11",
            dnp3_ctl_dir=f"1{AGGREGATOR}1",
        ),
        # from an outstation (DIR=0): destination is the master
        line(
            "eth:ethertype:ip:tcp:dnp3",
            tcp=(20000, 40000, PSH_ACK),
            ip=("10.0.0.2", "10.0.0.1"),
            dnp3_src="10",
            dnp3_dst="3",
            dnp3_ctl_dir="0",
        ),
    ]
    flow = single(aggregate(*lines))
    assert flow.identity == {"master_address": "3", "outstation_address": "10 | 11"}


def test_bacnet_device_instance_only_from_device_objects() -> None:
    flow = single(
        aggregate(
            line(
                "eth:ethertype:ip:udp:bvlc:bacnet:bacapp",
                udp=(47808, 47808),
                bacapp_objectType=f"0{AGGREGATOR}8",
                bacapp_instance_number=f"5{AGGREGATOR}1234",
                bacapp_vendor_identifier="260",
            )
        )
    )
    assert flow.identity == {"vendor_id": "260", "device_instance": "1234"}


def test_identity_values_are_capped_escaped_and_deduplicated() -> None:
    names = [f"name-{index}-" + "x" * 500 for index in range(10)]
    lines = [
        line("eth:ethertype:ip:udp:enip", udp=(44818, 50000), enip_lir_name=name + "\x01\x7f")
        for name in [*names, *names]
    ]
    flow = single(aggregate(*lines, max_field_chars=20))
    values = flow.identity["product_name"].split(" | ")
    assert values == [name[:20] for name in names[:MAX_IDENTITY_VALUES]]
    flow = single(aggregate(line("eth:ethertype:ip:udp:enip", udp=(44818, 1), enip_lir_name="a\x01b\x7fc")))
    assert flow.identity["product_name"] == "a\\x01b\\x7fc"
    flow = single(aggregate(line("eth:ethertype:ip:udp:enip", udp=(44818, 1), enip_lir_vendor="junk")))
    assert flow.identity == {}


def test_pending_table_evicts_unidentified_flows_first() -> None:
    identified = line("eth:ethertype:ip:tcp:dnp3", tcp=(40000, 20000, PSH_ACK))
    noise = [line("eth:ethertype:ip:udp", udp=(1000 + index, 9)) for index in range(10)]
    aggregator = aggregate(identified, *noise, identified, max_flows=3)
    assert aggregator.flows_evicted == 8
    assert aggregator.peak_tracked_flows == 3
    assert single(aggregator).packets == 2


def test_table_full_of_identified_flows_drops_new_ones() -> None:
    lines = [line("eth:ethertype:ip:tcp:dnp3", tcp=(40000 + index, 20000, PSH_ACK)) for index in range(5)]
    aggregator = aggregate(*lines, max_flows=2)
    assert len(aggregator.flows()) == 2
    assert aggregator.identified_flows_dropped == 3


def test_summarize_counts_flows_per_protocol_sorted() -> None:
    lines = [
        line("eth:ethertype:ip:tcp:dnp3", tcp=(40000, 20000, ACK)),
        line("eth:ethertype:ip:tcp:dnp3", tcp=(40001, 20000, ACK)),
        line("eth:ethertype:ip:udp:bvlc:bacnet", udp=(47808, 47808)),
    ]
    summary = summarize(aggregate(*lines).flows())
    assert summary == {"bacnet": 1, "dnp3": 2}
    assert list(summary) == ["bacnet", "dnp3"]
    assert summarize([]) == {}


# --------------------------------------------------------------------------------------------------
# tshark process handling, with fake executables
# --------------------------------------------------------------------------------------------------


def fake_tshark(tmp_path: Path, body: str) -> str:
    """A stand-in tshark: answers ``-G fields`` with nothing, otherwise runs ``body``."""
    script = tmp_path / f"fake-tshark-{abs(hash(body))}"
    script.write_text(f'#!/bin/sh\nif [ "$1" = "-G" ]; then exit 0; fi\n{body}\n')
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "any.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1" + bytes(20))
    return path


def test_hanging_tshark_is_stopped_by_the_timeout(
    tmp_path: Path, capture: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tshark = fake_tshark(tmp_path, "exec sleep 30")
    with caplog.at_level(logging.WARNING, logger="sensor.deep"):
        result = scan_captures([capture], tshark=tshark, limits=Limits(deep_tshark_timeout=0.5))
    assert (result.flows, result.files_failed) == ([], 1)
    assert any("stopped after" in record.getMessage() for record in caplog.records)


def test_garbage_and_overlong_output_is_counted_not_raised(tmp_path: Path, capture: Path) -> None:
    body = (
        "printf 'garbage\\n\\000\\377\\n'; head -c 3000000 /dev/zero | tr '\\0' 'a'; printf '\\nend\\n'; "
        "echo 'tshark: boom' >&2; exit 2"
    )
    result = scan_captures([capture], tshark=fake_tshark(tmp_path, body))
    assert result.files_failed == 1
    assert result.lines_skipped == 4
    assert result.packets == 0


def test_explicit_tshark_path_is_not_replaced_by_another(tmp_path: Path) -> None:
    assert find_tshark(str(tmp_path / "tshark")) is None
    assert not tshark_available(str(tmp_path / "tshark"))


@pytest.mark.skipif(not tshark_available(), reason="tshark is not installed (apt install tshark)")
def test_table_names_exist_in_this_tshark() -> None:
    """A typo in the tables would silently identify nothing; tshark lists what it knows."""
    tshark = find_tshark()
    assert tshark is not None
    listing = subprocess.run([tshark, "-G", "protocols"], capture_output=True, check=True).stdout.decode()
    protocols = {row.split("\t")[2] for row in listing.splitlines() if row.count("\t") >= 2}
    assert sorted(set(WIRESHARK_LAYERS) - protocols) == []
    fields = subprocess.run([tshark, "-G", "fields"], capture_output=True, check=True).stdout.decode()
    known = {row.split("\t")[2] for row in fields.splitlines() if row.count("\t") >= 2}
    assert sorted((set(BASE_FIELDS) | ALL_FIELDS) - known) == []
