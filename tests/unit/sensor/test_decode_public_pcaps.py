"""Decode and track every packet of every public capture; compare flow counts with tshark.

The captures are read with scapy's RawPcapReader, which hands over raw bytes and sniffs pcap vs
pcapng by magic (some ``.pcap`` files here are pcapng). tshark's ``conv,tcp`` counts one
conversation per TCP stream, so our TCP flow count must equal it (a new SYN after FIN/RST is a
new flow for both). UDP differs on purpose: tshark never times a UDP conversation out, while the
flow table ends one after ``udp_timeout`` idle seconds, so UDP is compared by distinct 5-tuples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scapy.utils import RawPcapReader
from zw_paths import shared_public_dir, shared_public_files

from sensor.decode import Decoder
from sensor.flows.table import FlowTable
from sensor.records import FlowSummary, Frame


def frames(path: Path) -> list[Frame]:
    out = []
    reader = RawPcapReader(str(path))
    try:
        file_linktype = getattr(reader, "linktype", None)
        for data, meta in reader:
            if hasattr(meta, "tshigh"):  # pcapng enhanced packet block
                ts = ((meta.tshigh << 32) | meta.tslow) / meta.tsresol
                linktype = meta.linktype
            else:
                ts = meta.sec + meta.usec / 1e6
                linktype = file_linktype
            out.append(Frame(ts, linktype, bytes(data), meta.wirelen))
    finally:
        reader.close()
    return out


def replay(path: Path) -> tuple[Decoder, FlowTable, list[FlowSummary]]:
    decoder = Decoder()
    table = FlowTable()
    summaries: list[FlowSummary] = []
    last_expire = None
    ts = 0.0
    for frame in frames(path):
        ts = frame.ts
        if last_expire is None or ts - last_expire >= 1.0:
            decoder.expire(ts)
            summaries += [o for o in table.expire(ts) if isinstance(o, FlowSummary)]
            last_expire = ts
        packet = decoder.decode(frame)
        if packet is not None:
            summaries += [o for o in table.track(packet) if isinstance(o, FlowSummary)]
    summaries += [o for o in table.flush(ts) if isinstance(o, FlowSummary)]
    return decoder, table, summaries


# tshark flags these frames too ("Bogus IPv4 version", "IPv4 total length exceeds packet length")
EXPECTED_INVALID = {"modbus-zeek-fuzz-1011.pcap": 1, "modbus-zeek-fuzz-72.pcap": 2}


@pytest.mark.parametrize("name", shared_public_files("") or ["(public captures absent)"])
def test_public_capture_decodes_and_flows_match_tshark(name: str, oracle: dict[str, Any]) -> None:
    path = shared_public_dir() / name
    expected = oracle[name]
    decoder, table, summaries = replay(path)
    assert decoder.counters["decoder.internal_error"] == 0
    assert decoder.invalid == EXPECTED_INVALID.get(name, 0), dict(decoder.counters)
    assert len(table) == 0  # flush ended everything

    tcp = [s for s in summaries if s.flow.transport == "tcp"]
    assert len(tcp) == expected["tcp_conversations"]["count"]
    listed = {frozenset((c["a"], c["b"])) for c in expected["tcp_conversations"].get("list", [])}
    ours = {
        frozenset((f"{s.flow.client_ip}:{s.flow.client_port}", f"{s.flow.server_ip}:{s.flow.server_port}"))
        for s in tcp
    }
    if len(listed) == expected["tcp_conversations"]["count"]:  # the oracle lists them all
        assert ours == {frozenset(_bracketless(x) for x in pair) for pair in listed}

    udp_tuples = {
        (s.flow.client_ip, s.flow.client_port, s.flow.server_ip, s.flow.server_port)
        for s in summaries
        if s.flow.transport == "udp"
    }
    assert len(udp_tuples) == expected["udp_conversations"]["count"]
    # every frame is either in some flow's packet count or counted as dropped by the decoder
    accounted = sum(s.pkts_toserver + s.pkts_toclient for s in summaries)
    dropped = (
        decoder.invalid
        + decoder.counters["decoder.non_ip"]
        + decoder.counters["decoder.unsupported_linktype"]
    )
    assert accounted + dropped == expected["packets"]


def _bracketless(endpoint: str) -> str:
    return endpoint.replace("[", "").replace("]", "")
