"""A conduit allowing a protocol only tshark names (``protocol: s7comm_plus, transport: tcp, ports: [102]``)
is honoured by ``zonewarden replay --deep --policy``, ``serve --replay`` with deep and a policy, and the live
sensor with --deep, as by ``zonewarden policy check --deep``: the policy judges a flow no native dissector
claims as the protocol tshark named, not as "unknown" tcp/102 (two false ``protocol_not_allowed`` alerts on
the public Zeek S7 trace). A replay runs tshark once, before the native pass; finish() reuses its flows."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_deep_parse import COLUMNS, PSH_ACK, TCP_S7, line
from zw_paths import shared_public_dir
from zw_veth import veth_pair
from zw_wait import wait_for

import sensor.deep as deep
from sensor.cli import main
from sensor.deep import FlowAggregator, LiveDeepScan, tshark_available
from sensor.live import DEEP_NAME_WAIT, LiveRunner
from sensor.records import FlowRef
from sensor.runtime import Sensor, SensorConfig, replay

needs_tshark = pytest.mark.skipif(
    not tshark_available(), reason="tshark is not installed (apt install tshark)"
)

ENG = "10.235.149.95"  # engineering station: S7comm-plus (TPKT/COTP, tcp/102) to both PLCs
PLC_A, PLC_B = "10.235.149.240", "10.235.149.243"  # Modbus between them
S7_FLOWS = [(ENG, 49456, PLC_A), (ENG, 49447, PLC_B)]  # client ip, client port, server ip (port 102)


def s7_trace() -> Path:
    public: Path = shared_public_dir()  # skips when ../shared is absent
    return public / "modbus-zeek-big-fc1-fc5-with-s7.pcap"


def write_policy(path: Path, allow: str) -> Path:
    """Zones eng and plc (Modbus inside plc allowed), one conduit eng -> plc allowing ``allow`` on tcp."""
    protocol, port = allow.split("/")
    path.write_text(
        "version: 1\ndefault: deny\nzones:\n"
        f"  - id: plc\n    members: [{PLC_A}/32, {PLC_B}/32]\n    intra_zone: allow\n"
        f"  - id: eng\n    members: [{ENG}/32]\n"
        "conduits:\n  - id: eng-plc\n    from: eng\n    to: plc\n    allow:\n"
        f"      - protocol: {protocol}\n        transport: tcp\n        ports: [{port}]\n"
    )
    return path


@pytest.fixture
def tshark_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A spy on the real ``sensor.deep.identify_other_protocols``: one ``"tshark"`` entry per run."""
    real = deep.identify_other_protocols
    events: list[str] = []

    def spy(paths: Any, **options: Any) -> list[deep.OtherProtocolFlow]:
        events.append("tshark")
        return real(paths, **options)

    monkeypatch.setattr(deep, "identify_other_protocols", spy)
    return events


def policy_alerts(eve: Path) -> list[tuple[str, str, int, str]]:
    """(rule, dest ip, dest port, evidence protocol) of the policy alerts in an EVE file."""
    out = []
    for text in eve.read_text().splitlines():
        record = json.loads(text)
        if record["event_type"] == "alert" and record["alert"]["category"] == "policy":
            zw = record["zonewarden"]
            out.append((zw["rule"], record["dest_ip"], record["dest_port"], zw["evidence"]["protocol"]))
    return sorted(out)


# --------------------------------------------------------------------------------------------------
# zonewarden replay --deep --policy
# --------------------------------------------------------------------------------------------------


@needs_tshark
def test_replay_deep_policy_honours_a_conduit_allowing_s7comm_plus(
    tmp_path: Path, tshark_runs: list[str]
) -> None:
    pcap = s7_trace()
    policy = write_policy(tmp_path / "policy.yaml", "s7comm_plus/102")
    out, eve = tmp_path / "summary.json", tmp_path / "eve.json"
    args = ["replay", str(pcap), "--deep", "--policy", str(policy), "-q", "--summary-json", str(out)]
    assert main([*args, "--eve", str(eve)]) == 0
    summary = json.loads(out.read_text())
    assert summary["other_protocols"] == {"s7comm_plus": 2}
    section = summary["policy"]
    assert (section["violations"], section["alerts"], section["denied_by_conduit"]) == (0, 0, {})
    assert section["unused_rules"] == 0 and section["operations"] > 2  # the s7comm_plus entry allowed both
    assert summary["alerts"]["total"] == 0 and policy_alerts(eve) == []
    assert tshark_runs == ["tshark"]  # once: its flows named the policy's and then the inventory's flows
    # the same verdict as `zonewarden policy check --deep`
    from policy.cli import run_check

    report, errors = run_check(policy, [pcap], deep=True)
    assert errors == [] and report["violations"] == []
    assert report["conduits"]["eng-plc"]["allowed"] == {"s7comm_plus:tcp/102": 2}


@needs_tshark
def test_replay_deep_policy_not_allowing_s7comm_plus_still_alerts_and_names_it(tmp_path: Path) -> None:
    policy = write_policy(tmp_path / "policy.yaml", "dnp3/20000")
    out, eve = tmp_path / "summary.json", tmp_path / "eve.json"
    args = ["replay", str(s7_trace()), "--deep", "--policy", str(policy), "-q", "--summary-json", str(out)]
    assert main([*args, "--eve", str(eve)]) == 0
    summary = json.loads(out.read_text())
    assert summary["policy"]["violations"] == 2 and summary["policy"]["denied_by_conduit"] == {"eng-plc": 2}
    rule = "policy:eng-plc:protocol_not_allowed"
    assert policy_alerts(eve) == [(rule, PLC_A, 102, "s7comm_plus"), (rule, PLC_B, 102, "s7comm_plus")]


@needs_tshark
def test_replay_runs_tshark_once_before_the_native_pass_only_with_a_policy(
    tmp_path: Path, tshark_runs: list[str]
) -> None:
    pcap = s7_trace()
    policy = write_policy(tmp_path / "policy.yaml", "s7comm_plus/102")

    def first_frame(frame: object) -> None:
        if "frame" not in tshark_runs:
            tshark_runs.append("frame")

    summary, _ = replay([pcap], SensorConfig(deep=True, policy_path=policy), on_frame=first_frame)
    assert tshark_runs == ["tshark", "frame"] and summary["policy"]["violations"] == 0
    tshark_runs.clear()
    summary, _ = replay([pcap], SensorConfig(deep=True), on_frame=first_frame)  # as before: after the pass
    assert tshark_runs == ["frame", "tshark"] and summary["other_protocols"] == {"s7comm_plus": 2}
    tshark_runs.clear()
    summary, _ = replay([pcap], SensorConfig(policy_path=policy), on_frame=first_frame)
    assert tshark_runs == ["frame"] and "other_protocols" not in summary
    assert summary["policy"]["violations"] == 2  # without --deep tcp/102 stays unidentified, as before


@needs_tshark
def test_serve_replay_with_deep_and_policy_honours_the_conduit(
    tmp_path: Path, tshark_runs: list[str]
) -> None:
    """``zonewarden serve --replay --deep --policy``: the same runner as sniff (LiveRunner) over files."""
    policy = write_policy(tmp_path / "policy.yaml", "s7comm_plus/102")
    sensor = Sensor(SensorConfig(deep=True, policy_path=policy))
    runner = LiveRunner(sensor, paths=[s7_trace()], deep=True, watch_policy=False)
    summary = runner.run(duration=60)
    assert runner.error is None and tshark_runs == ["tshark"]
    assert summary["other_protocols"] == {"s7comm_plus": 2}
    assert (summary["policy"]["violations"], summary["alerts"]["total"]) == (0, 0)


# --------------------------------------------------------------------------------------------------
# Live: the policy asks LiveDeepScan for the flows tshark has named so far
# --------------------------------------------------------------------------------------------------


def flow_ref(client: str, client_port: int, server: str, server_port: int) -> FlowRef:
    return FlowRef(1, "", "tcp", client, client_port, server, server_port)


def scan_with(*lines: str) -> LiveDeepScan:
    """A LiveDeepScan (not started) whose aggregator has read these field-stream lines."""
    scan = LiveDeepScan("zw-unused")
    scan.aggregator = FlowAggregator(COLUMNS)
    for text in lines:
        scan.aggregator.feed_line(text)
    return scan


def s7_line(client: str, client_port: int, server: str) -> str:
    # TPKT/COTP on tcp/102 whose payload starts with 0x72: S7comm-plus (sensor.deep ISO_TSAP_PROTOCOL_IDS)
    return line(TCP_S7 + ":data", ip=(client, server), tcp=(client_port, 102, PSH_ACK), data="72ff")


def test_live_scan_names_a_flow_either_way_round_and_only_once_tshark_named_it() -> None:
    modbus = line("eth:ethertype:ip:tcp:mbtcp:modbus", ip=(PLC_A, PLC_B), tcp=(49226, 502, PSH_ACK))
    scan = scan_with(s7_line(ENG, 49456, PLC_A), modbus)
    assert scan.flow_protocol(flow_ref(ENG, 49456, PLC_A, 102)) == "s7comm_plus"
    assert scan.flow_protocol(flow_ref(PLC_A, 102, ENG, 49456)) == "s7comm_plus"  # oriented the other way
    assert scan.flow_protocol(flow_ref(ENG, 49447, PLC_B, 102)) is None  # not (yet) named
    assert scan.flow_protocol(flow_ref(PLC_A, 49226, PLC_B, 502)) is None  # native: ours to judge
    assert LiveDeepScan("zw-unused").flow_protocol(flow_ref(ENG, 49456, PLC_A, 102)) is None  # never started
    assert scan.aggregator is not None
    scan.aggregator.feed_line(s7_line(ENG, 49447, PLC_B))
    assert scan.flow_protocol(flow_ref(ENG, 49447, PLC_B, 102)) == "s7comm_plus"


def test_live_policy_judges_a_flow_tshark_named_as_its_protocol_and_one_it_did_not_as_unknown(
    tmp_path: Path,
) -> None:
    """The wiring of sniff --deep (Sensor.judge_flows_as(scan.flow_protocol)) with tshark's state given:
    it named the S7 flow to PLC_A, not yet the one to PLC_B. The flow to PLC_A is allowed by the conduit;
    the one to PLC_B is the documented remainder: judged as unknown tcp/102 and alerted as such."""
    pcap = s7_trace()
    policy = write_policy(tmp_path / "policy.yaml", "s7comm_plus/102")
    eve = tmp_path / "eve.json"
    sensor = Sensor(SensorConfig(policy_path=policy, eve_path=eve))
    try:
        sensor.judge_flows_as(scan_with(s7_line(ENG, 49456, PLC_A)).flow_protocol)
        assert sensor.replay_file(pcap).error is None
    finally:
        summary = sensor.finish([pcap])  # the EVE file is closed whatever happened
    assert summary["policy"]["violations"] == 1
    assert policy_alerts(eve) == [("policy:eng-plc:protocol_not_allowed", PLC_B, 102, "unknown")]


def test_live_policy_waits_for_a_name_tshark_reads_after_the_flow_ended(tmp_path: Path) -> None:
    """As above, with sniff --deep's wait for names: the flow to PLC_B ended (its FIN, then the closed
    linger) before tshark's line naming it was read. It waits, the line comes, the conduit allows it."""
    pcap = s7_trace()
    policy = write_policy(tmp_path / "policy.yaml", "s7comm_plus/102")
    eve = tmp_path / "eve.json"
    sensor = Sensor(SensorConfig(policy_path=policy, eve_path=eve))
    scan = scan_with(s7_line(ENG, 49456, PLC_A))
    try:
        sensor.judge_flows_as(scan.flow_protocol, wait_for_names=3600.0)
        assert sensor.replay_file(pcap).error is None
        sensor.pipeline.finish()  # every flow has ended; the one to PLC_B waits for its name
        assert sensor.policy is not None and sensor.policy.violations == 0
        assert scan.aggregator is not None
        scan.aggregator.feed_line(s7_line(ENG, 49447, PLC_B))  # tshark's line, late
    finally:
        summary = sensor.finish([pcap])
    assert summary["policy"]["violations"] == 0
    assert policy_alerts(eve) == []


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    with veth_pair("zwp", ("tcpreplay",)) as ends:
        yield ends


@pytest.mark.needs_root
@needs_tshark
def test_sniff_deep_honours_a_conduit_allowing_s7comm_plus(veth: tuple[str, str], tmp_path: Path) -> None:
    """The public S7 trace sent on a veth pair; tshark beside the capture names the two S7comm-plus flows
    before they end (at stop), so the conduit allows them: no policy alert (there were two)."""
    capture_end, send_end = veth
    pcap = s7_trace()
    policy = write_policy(tmp_path / "policy.yaml", "s7comm_plus/102")
    sensor = Sensor(SensorConfig(policy_path=policy, eve_path=tmp_path / "eve.json"))
    runner = LiveRunner(sensor, interface=capture_end, deep=True, watch_policy=False, deep_interval=0.2)
    runner.start()
    try:
        scan = runner.deep_scan
        assert scan is not None and scan.error is None
        # a flow that ends before tshark's line naming it waits for that line (policy.wait_for_names)
        assert sensor.policy is not None and sensor.policy.wait_for_names == DEEP_NAME_WAIT
        assert scan.ready.wait(30), "dumpcap did not start capturing"
        subprocess.run(
            ["tcpreplay", "-i", send_end, "--mbps", "20", str(pcap)],
            check=True,
            capture_output=True,
            timeout=60,
        )
        wait_for(lambda: runner.summary().get("other_protocols") == {"s7comm_plus": 2})
    finally:
        assert runner.stop()
    summary = runner.final_summary
    assert runner.error is None and summary is not None
    assert summary["live"]["deep"]["error"] is None
    assert summary["policy"]["operations"] > 2 and summary["modbus"]["transactions"] > 0
    assert (summary["policy"]["violations"], summary["policy"]["denied_by_conduit"]) == (0, {})
    assert policy_alerts(tmp_path / "eve.json") == []


@needs_tshark
def test_replay_says_when_tshark_starts_reading_before_or_after_the_native_pass(
    tmp_path: Path, tshark_runs: list[str]
) -> None:
    """The progress bar stops while tshark reads the files: ``before_tshark`` lets the command say so,
    before the pass (with a policy, which must know tshark's names) or after it (without)."""
    pcap = s7_trace()
    policy = write_policy(tmp_path / "policy.yaml", "s7comm_plus/102")
    for config, order in (
        (SensorConfig(deep=True), ["file", "said", "tshark"]),
        (SensorConfig(deep=True, policy_path=policy), ["said", "tshark", "file"]),
    ):
        tshark_runs.clear()
        replay(
            [pcap],
            config,
            on_file=lambda _path: tshark_runs.append("file"),
            before_tshark=lambda: tshark_runs.append("said"),
        )
        assert tshark_runs == order
