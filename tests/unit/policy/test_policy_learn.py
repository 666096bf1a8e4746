"""learn -> check round trip: a learned policy allows exactly what it was learned from."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import rdpcap, wrpcap
from zw_paths import PCAPS, shared_public_dir

from policy.cli import run_check
from policy.learn import learn
from policy.load import parse_policy
from sensor.cli import main


def add_write(src_pcap: Path, out: Path, client: str = "127.0.0.1", server: str = "127.0.0.1") -> None:
    """The capture plus one new TCP connection carrying one FC6 write (and its echo response)."""
    packets = list(rdpcap(str(src_pcap)))
    t = float(packets[-1].time) + 1.0
    cseq, sseq = 7000, 9000
    new = []

    def pkt(to_server: bool, flags: str, payload: bytes = b"") -> None:
        nonlocal t
        t += 0.001
        sport, dport = (40999, 502) if to_server else (502, 40999)
        ip = IP(src=client, dst=server) if to_server else IP(src=server, dst=client)
        p = (
            Ether()
            / ip
            / TCP(
                sport=sport,
                dport=dport,
                flags=flags,
                seq=cseq if to_server else sseq,
                ack=sseq if to_server else cseq,
            )
        )
        if payload:
            p = p / Raw(payload)
        p.time = t
        new.append(p)

    write = struct.pack(">HHHBBHH", 77, 0, 6, 1, 6, 7, 4321)  # MBAP + FC6 register 7 = 4321
    pkt(True, "S")
    cseq += 1
    pkt(False, "SA")
    sseq += 1
    pkt(True, "A")
    pkt(True, "PA", write)
    cseq += len(write)
    pkt(False, "PA", write)
    sseq += len(write)
    pkt(True, "FA")
    cseq += 1
    pkt(False, "FA")
    sseq += 1
    pkt(True, "A")
    wrpcap(str(out), packets + new)


def test_learned_policy_has_zero_violations_then_exactly_the_new_write(tmp_path: Path) -> None:
    polling = PCAPS / "modbus-pymodbus-polling.pcap"
    text, errors = learn([polling])
    assert errors == []
    policy_path = tmp_path / "learned.yaml"
    policy_path.write_text(text)
    parse_policy(text)
    assert "# learned from 8 read_holding_registers (FC3) transactions" in text

    report, errors = run_check(policy_path, [polling])
    assert errors == [] and report["violations"] == []
    assert report["summary"]["operations"] > 0 and report["unused_rules"] == []

    merged = tmp_path / "plus-write.pcap"
    add_write(polling, merged)
    report, errors = run_check(policy_path, [merged])
    assert errors == []
    assert len(report["violations"]) == 1
    v = report["violations"][0]
    assert v["rule"].endswith(":function_not_allowed")
    assert (v["src_ip"], v["dest_ip"], v["dest_port"], v["count"]) == ("127.0.0.1", "127.0.0.1", 502, 1)
    assert v["evidence"]["operation"]["function"] == 6
    assert v["evidence"]["operation"]["values"] == {"holding_registers": [4321]}


@pytest.mark.parametrize(
    "names",
    [
        ["modbus-pymodbus-writes-exceptions.pcap", "modbus-pymodbus-device-id.pcap"],
        ["opcua-asyncua-none.pcap", "opcua-asyncua-basic256sha256.pcap"],
        ["mqtt-v311-mosquitto.pcap", "mqtt-v5-mosquitto.pcap", "mqtt-tls-mosquitto.pcap"],
    ],
)
def test_round_trip_on_project_captures(tmp_path: Path, names: list[str]) -> None:
    paths = [PCAPS / n for n in names]
    text, _ = learn(paths)
    policy_path = tmp_path / "p.yaml"
    policy_path.write_text(text)
    report, errors = run_check(policy_path, paths)
    assert errors == []
    assert report["violations"] == [], report["violations"]


@pytest.mark.parametrize(
    "name",
    [
        "modbus-cset16-send-fake-command.pcap",
        "modbus-iti-fc4-fc6-four-units.pcap",
        "opcua-open62541-mainloop.pcap",
        "mqtt-sv-v311-many-topics.pcap",
    ],
)
def test_round_trip_on_public_captures(tmp_path: Path, name: str) -> None:
    path = shared_public_dir() / name
    text, _ = learn([path])
    policy_path = tmp_path / "p.yaml"
    policy_path.write_text(text)
    report, _ = run_check(policy_path, [path])
    assert report["violations"] == [], report["violations"][:3]


def test_learn_and_check_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    polling = str(PCAPS / "modbus-pymodbus-polling.pcap")
    assert main(["policy", "learn", polling]) == 0
    text = capsys.readouterr().out
    policy_path = tmp_path / "p.yaml"
    policy_path.write_text(text)
    assert main(["policy", "check", "--policy", str(policy_path), polling, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["violations"] == []
    conduit = next(iter(report["conduits"].values()))
    assert conduit["allowed"] == {
        "modbus:read_coils": 8,
        "modbus:read_holding_registers": 8,
        "modbus:read_input_registers": 8,
        "unknown:tcp/502": 1,  # a connection pymodbus opened and closed without a request
    }
    merged = tmp_path / "m.pcap"
    add_write(PCAPS / "modbus-pymodbus-polling.pcap", merged)
    assert main(["policy", "check", "--policy", str(policy_path), str(merged), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(v["rule"].rsplit(":", 1)[1], v["count"]) for v in report["violations"]] == [
        ("function_not_allowed", 1)
    ]
    assert next(iter(report["conduits"].values()))["denied"] == {"modbus:write_single_register": 1}
    assert main(["policy", "check", "--policy", str(policy_path), str(merged)]) == 1
    assert "DENIED" in capsys.readouterr().out


def test_a_frozen_collector_thaws_into_the_same_proposal() -> None:
    """The API copies a running sensor's observations as bytes (freeze) and proposes from the copy
    (thaw) once the sensor has gone on: the copy must propose what the original does, keep no link to it,
    and leave the original's flow lookup in place."""
    from policy.learn import TrafficCollector, render_policy
    from sensor.runtime import Sensor, SensorConfig

    def lookup(flow: object) -> None:
        return None

    collector = TrafficCollector(lookup)
    sensor = Sensor(SensorConfig(), extra_sinks=[collector])
    captures = [PCAPS / "modbus-pymodbus-writes-exceptions.pcap", PCAPS / "opcua-asyncua-none.pcap"]
    for path in captures:
        sensor.replay_file(path)
    sensor.finish(captures)
    frozen = collector.freeze()
    assert collector.flow_protocol is lookup
    copy = TrafficCollector.thaw(frozen)
    assert copy.flow_protocol is None and copy.pairs and copy.pairs is not collector.pairs
    sources = [str(p) for p in captures]
    assert render_policy(copy, sources, "plant") == render_policy(collector, sources, "plant")
    copy.pairs.clear()  # a deep copy: the original keeps what it observed
    assert collector.pairs
