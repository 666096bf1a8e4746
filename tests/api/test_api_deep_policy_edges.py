"""``zonewarden replay --deep --policy``: tshark names the flows no native dissector claims before the native
pass, so their policy alert names that protocol (app_proto s7comm_plus, dnp3), and the inventory renames the
flow's ``tcp``/``udp`` edge after it. (Live, tshark may name a flow only after its alert: that alert names
its transport, and the store matches it to the renamed edge; tests/unit/sensor/store.) The renamed edge is
the communication the alert is about: GET /api/v1/communications must show it violating, once (it showed
it ``allowed``: no alert named it)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from zw_api_env import ApiEnv
from zw_dnp3 import dnp3_frame
from zw_paths import REPO, shared_public_dir

from sensor.cli import main
from sensor.deep import tshark_available

pytestmark = pytest.mark.skipif(not tshark_available(), reason="tshark is not installed (apt install tshark)")

RULE = "policy:eng->plc:no_conduit"


def _policy(path: Path, plc: list[str], eng: list[str]) -> Path:
    def members(ips: list[str]) -> str:
        return ", ".join(f"{ip}/32" for ip in ips)

    path.write_text(
        "version: 1\ndefault: deny\nzones:\n"
        f"  - id: plc\n    members: [{members(plc)}]\n"
        f"  - id: eng\n    members: [{members(eng)}]\n"
        "conduits: []\n"
    )
    return path


def _communications(make_env: Callable[..., ApiEnv], db: Path, policy: Path) -> list[tuple[object, ...]]:
    env = make_env(db_path=db, policy_path=policy)
    edges = env.client.get("/api/v1/communications", headers=env.auth("viewer")).json()["items"]
    return sorted(
        (
            e["client"],
            e["server"],
            e["protocol"],
            e["port"],
            e["policy"]["status"],
            [(g["rule"], g["alerts"]) for g in e["policy"]["alerts"]],
        )
        for e in edges
    )


def test_s7_without_a_conduit_is_violating_once_tshark_named_it(
    tmp_path: Path, make_env: Callable[..., ApiEnv]
) -> None:
    """The public Zeek trace: Modbus inside the PLC zone, S7comm-plus (TPKT/COTP, tcp/102) from an
    engineering station to both PLCs with no conduit."""
    pcap = shared_public_dir() / "modbus-zeek-big-fc1-fc5-with-s7.pcap"  # skips when ../shared is absent
    db = tmp_path / "zw.db"
    policy = _policy(tmp_path / "policy.yaml", ["10.235.149.240", "10.235.149.243"], ["10.235.149.95"])
    args = ["replay", str(pcap), "--deep", "--policy", str(policy), "--db", str(db), "-q"]
    assert main([*args, "--summary-json", str(tmp_path / "summary.json")]) == 0
    assert _communications(make_env, db, policy) == [
        ("10.235.149.240", "10.235.149.243", "modbus", 502, "allowed", []),  # inside the PLC zone
        ("10.235.149.95", "10.235.149.240", "s7comm_plus", 102, "violation", [(RULE, 1)]),
        ("10.235.149.95", "10.235.149.243", "s7comm_plus", 102, "violation", [(RULE, 1)]),
    ]


def test_dnp3_without_a_conduit_is_violating_once_tshark_named_it(
    tmp_path: Path, make_env: Callable[..., ApiEnv]
) -> None:
    """A master reading class 0 from an outstation (tcp/20000) with no conduit; beside it a bare service
    tshark does not name, which stays a tcp edge and violating as before."""
    sys.path.insert(0, str(REPO / "tests" / "replay"))
    from builders import Conversation, _write

    dnp3 = Conversation("10.0.0.5", "10.0.1.5", 40000, 20000).handshake()
    for seq in range(3):
        # transport FIR|FIN, application FIR|FIN, READ (1), object 60 var 1 (class 0), qualifier 0x06
        read = bytes([0xC0 | seq, 0xC0 | seq, 0x01, 0x3C, 0x01, 0x06])
        dnp3.send(True, dnp3_frame(0xC4, 10, 3, read))  # DIR=1 PRM=1, unconfirmed user data
        response = bytes([0xC0 | seq, 0xC0 | seq, 0x81, 0x00, 0x00])  # RESPONSE, IIN 0
        dnp3.send(False, dnp3_frame(0x44, 3, 10, response))
    dnp3.close()
    bare = Conversation("10.0.0.5", "10.0.1.5", 40001, 9999, t0=dnp3.t + 1)
    bare.handshake().send(True, b"hello\r\n").send(False, b"world\r\n").close()
    pcap, db = tmp_path / "dnp3.pcap", tmp_path / "zw.db"
    _write(pcap, dnp3, bare)
    policy = _policy(tmp_path / "policy.yaml", ["10.0.1.5"], ["10.0.0.5"])
    assert main(["replay", str(pcap), "--deep", "--policy", str(policy), "--db", str(db), "-q"]) == 0
    # one alert (rule and host pair) for both flows: it names dnp3's transport and port, lists tcp/9999
    assert _communications(make_env, db, policy) == [
        ("10.0.0.5", "10.0.1.5", "dnp3", 20000, "violation", [(RULE, 1)]),
        ("10.0.0.5", "10.0.1.5", "tcp", 9999, "violation", [(RULE, 1)]),
    ]
