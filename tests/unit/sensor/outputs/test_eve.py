"""The EVE serializer: Suricata's envelope, direction-aware addresses, JSON-safe bodies."""

from __future__ import annotations

import io
import json

from sensor.outputs.eve import EveWriter, eve_record, eve_timestamp
from sensor.records import FlowRef, FlowSummary, ProtocolAnomaly

FLOW = FlowRef(
    flow_id=123456789,
    community_id="1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
    transport="tcp",
    client_ip="10.0.0.1",
    client_port=50000,
    server_ip="10.0.0.2",
    server_port=502,
    vlans=(10, 20),
)


def test_timestamp_is_suricata_form_in_utc() -> None:
    assert eve_timestamp(1424798300.632394) == "2015-02-24T17:18:20.632394+0000"


def test_timestamp_out_of_range_does_not_raise() -> None:
    assert eve_timestamp(1e20).startswith("1970-01-01")


def test_envelope_follows_direction_of_the_event() -> None:
    to_client = ProtocolAnomaly(
        ts=1.0, flow=FLOW, kind="modbus.unsolicited_response", to_server=False, app_proto="modbus"
    )
    rec = eve_record(to_client)
    assert (rec["src_ip"], rec["src_port"], rec["dest_ip"], rec["dest_port"]) == (
        "10.0.0.2",
        502,
        "10.0.0.1",
        50000,
    )
    assert rec["proto"] == "TCP"
    assert rec["app_proto"] == "modbus"
    assert rec["vlan"] == [10, 20]
    assert rec["community_id"] == FLOW.community_id
    assert rec["anomaly"]["event"] == "modbus.unsolicited_response"
    assert rec["anomaly"]["type"] == "applayer"


def test_stream_anomaly_without_app_proto() -> None:
    rec = eve_record(ProtocolAnomaly(ts=1.0, flow=FLOW, kind="tcp.overlap_diff"))
    assert "app_proto" not in rec
    assert rec["anomaly"]["type"] == "stream"
    assert rec["anomaly"]["layer"] == "tcp"


def test_flow_record_and_writer_lines() -> None:
    summary = FlowSummary(
        flow=FLOW,
        start=1.0,
        end=2.5,
        pkts_toserver=3,
        pkts_toclient=2,
        bytes_toserver=300,
        bytes_toclient=200,
        state="closed",
        reason="fin",
        app_proto="modbus",
    )
    buf = io.StringIO()
    writer = EveWriter(buf)
    writer.handle(summary)
    writer.handle(ProtocolAnomaly(ts=3.0, flow=None, kind="decoder.invalid_ipv4_header"))
    writer.close()
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [r["event_type"] for r in lines] == ["flow", "anomaly"]
    assert lines[0]["flow"]["pkts_toserver"] == 3
    assert lines[0]["app_proto"] == "modbus"
    assert "src_ip" not in lines[1]
    assert writer.written == 2
