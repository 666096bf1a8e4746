"""GET /api/v1/graph/paths: who can reach an asset, through which hops, with what and against which policy.

The store is filled by replaying real captures (pcaps/) given plant addresses (tests/zw_reach.py): an IT
jump host reaches the safety PLC through the SCADA host (OPC UA, then Modbus writes the conduit does not
allow) and through a gateway (MQTT with no conduit at all, then Modbus reads the conduit allows).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from zw_api_env import ApiEnv
from zw_reach import GATEWAY, JUMP_HOST, SAFETY_PLC, SCADA, plant_captures, plant_policy

from sensor.cli import main
from sensor.runtime import SensorConfig, replay

PATHS = "/api/v1/graph/paths"


@pytest.fixture(scope="module")
def captures(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return plant_captures(tmp_path_factory.mktemp("plant"))


@pytest.fixture
def plant(make_env: Callable[..., ApiEnv], tmp_path: Path, captures: list[Path]) -> Callable[[bool], ApiEnv]:
    """The plant replayed (against its policy) into a fresh store; the API with or without the policy."""
    policy = plant_policy(tmp_path / "policy.yaml")
    db = tmp_path / "zonewarden.db"
    summary, _ = replay(captures, SensorConfig(db_path=db, policy_path=policy))
    assert summary["alerts"]["total"] > 0

    def make(with_policy: bool) -> ApiEnv:
        return make_env(db_path=db, policy_path=policy if with_policy else None)

    return make


def _get(env: ApiEnv, role: str | None = "viewer", **params: Any) -> Any:
    return env.client.get(PATHS, headers=env.auth(role) if role else {}, params=params)


def _route(path: list[dict[str, Any]]) -> list[str]:
    return [path[0]["client"], *(hop["server"] for hop in path)]


def _marks(hop: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (
            e["protocol"],
            e["policy"]["status"],
            ",".join(f"{g['conduit']}|{g['rule']}" for g in e["policy"]["alerts"]),
        )
        for e in hop["edges"]
    ]


def test_paths_through_middle_hosts_carry_operations_zones_and_policy_marks(
    plant: Callable[[bool], ApiEnv],
) -> None:
    env = plant(True)
    r = _get(env, source=JUMP_HOST, target=SAFETY_PLC)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert {k: doc[k] for k in ("source", "target", "directed", "max_hops", "limit", "truncated")} == {
        "source": JUMP_HOST,
        "target": SAFETY_PLC,
        "directed": True,
        "max_hops": 4,
        "limit": 20,
        "truncated": False,
    }
    assert doc["policy_loaded"] and doc["steps"] > 0
    # shortest first, then in order of address: through the SCADA host (10.2.0.4), then the gateway
    assert [_route(p) for p in doc["paths"]] == [
        [JUMP_HOST, SCADA, SAFETY_PLC],
        [JUMP_HOST, GATEWAY, SAFETY_PLC],
    ]
    (opcua, writes), (mqtt, reads) = doc["paths"]

    assert (opcua["client_zone"], opcua["server_zone"], opcua["crosses_zones"]) == ("it", "scada", True)
    assert opcua["direction"] == "forward" and opcua["policy_status"] == "allowed"
    assert _marks(opcua) == [("opcua", "allowed", "")]
    assert {"Read", "Write", "Call"} <= set(opcua["edges"][0]["operations"]["service"])
    assert opcua["edges"][0]["port"] == 4840 and opcua["edges"][0]["packets"] > 0

    # the SCADA host writes to the safety PLC: the conduit allows reads only
    assert (writes["client_zone"], writes["server_zone"]) == ("scada", "safety")
    assert writes["policy_status"] == "violation"
    modbus = next(e for e in writes["edges"] if e["protocol"] == "modbus")
    assert {"5", "6", "15", "16"} <= set(modbus["operations"]["function"])
    assert ("modbus", "violation", "scada-to-safety|policy:scada-to-safety:function_not_allowed") in _marks(
        writes
    )

    # the jump host's MQTT to the gateway crosses zones with no conduit: the alert names none
    assert (mqtt["client_zone"], mqtt["server_zone"], mqtt["crosses_zones"]) == ("it", "gateway", True)
    assert _marks(mqtt) == [("mqtt", "violation", "|policy:it->gateway:no_conduit")]
    assert mqtt["policy_status"] == "violation"

    assert reads["policy_status"] == "allowed"
    modbus = next(e for e in reads["edges"] if e["protocol"] == "modbus")
    assert modbus["operations"]["function"] == ["1", "3", "4"]


def test_directed_paths_follow_who_opened_the_connection_undirected_either_way(
    plant: Callable[[bool], ApiEnv],
) -> None:
    env = plant(False)  # no policy on this server: zones unknown, quiet edges "unknown"
    back = _get(env, source=SAFETY_PLC, target=JUMP_HOST).json()
    assert back["paths"] == [] and not back["truncated"]  # the PLC opened no connection
    either = _get(env, source=SAFETY_PLC, target=JUMP_HOST, directed="false").json()
    assert not either["directed"] and not either["policy_loaded"]
    assert [_route(p) for p in either["paths"]] == [
        [SAFETY_PLC, SCADA, JUMP_HOST],
        [SAFETY_PLC, GATEWAY, JUMP_HOST],
    ]
    hops = [hop for path in either["paths"] for hop in path]
    assert {hop["direction"] for hop in hops} == {"reverse"}
    assert all(e["server"] == hop["client"] for hop in hops for e in hop["edges"])
    assert {(hop["client_zone"], hop["server_zone"], hop["crosses_zones"]) for hop in hops} == {
        (None, None, None)
    }
    # the marks the sensor stored stay; an edge without one is unknown (no policy to call it allowed)
    opcua = either["paths"][0][1]
    assert opcua["policy_status"] == "unknown" and _marks(opcua) == [("opcua", "unknown", "")]
    assert either["paths"][0][0]["policy_status"] == "violation"


def test_hops_and_limit_cut_the_answer(plant: Callable[[bool], ApiEnv]) -> None:
    env = plant(True)
    one_hop = _get(env, source=JUMP_HOST, target=SAFETY_PLC, max_hops=1).json()
    assert one_hop["paths"] == [] and not one_hop["truncated"]
    first = _get(env, source=JUMP_HOST, target=SAFETY_PLC, limit=1).json()
    assert [_route(p) for p in first["paths"]] == [[JUMP_HOST, SCADA, SAFETY_PLC]] and first["truncated"]
    direct = _get(env, source=SCADA, target=SAFETY_PLC, max_hops=8).json()
    assert [_route(p) for p in direct["paths"]] == [[SCADA, SAFETY_PLC]]
    assert _get(env, source="10.01.1.5", target=SAFETY_PLC).status_code == 422  # octal or decimal?


@pytest.mark.parametrize(
    ("params", "end"),
    [
        ({"source": "10.99.0.1", "target": SAFETY_PLC}, "source 10.99.0.1"),
        ({"source": JUMP_HOST, "target": "2001:DB8::0001"}, "target 2001:db8::1"),
    ],
)
def test_unknown_asset_is_404_naming_the_end(
    plant: Callable[[bool], ApiEnv], params: dict[str, str], end: str
) -> None:
    r = _get(plant(True), **params)
    assert r.status_code == 404
    assert r.json()["error"] == {"code": "not_found", "message": f"no such asset: {end}"}


@pytest.mark.parametrize(
    "params",
    [
        {"source": "not-an-ip", "target": SAFETY_PLC},
        {"source": JUMP_HOST, "target": "10.3.0.256"},
        {"source": JUMP_HOST},
        {"source": JUMP_HOST, "target": SAFETY_PLC, "max_hops": "0"},
        {"source": JUMP_HOST, "target": SAFETY_PLC, "max_hops": "9"},
        {"source": JUMP_HOST, "target": SAFETY_PLC, "limit": "0"},
        {"source": JUMP_HOST, "target": SAFETY_PLC, "limit": "101"},
        {"source": JUMP_HOST, "target": SAFETY_PLC, "directed": "sideways"},
        {"source": JUMP_HOST, "target": SAFETY_PLC, "zone": "it"},  # unknown parameter
    ],
)
def test_invalid_questions_are_422(plant: Callable[[bool], ApiEnv], params: dict[str, str]) -> None:
    r = _get(plant(True), **params)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_paths_need_a_token(plant: Callable[[bool], ApiEnv]) -> None:
    env = plant(True)
    r = _get(env, None, source=JUMP_HOST, target=SAFETY_PLC)
    assert r.status_code == 401
    bad = env.client.get(
        PATHS, headers={"Authorization": "Bearer nope"}, params={"source": JUMP_HOST, "target": SAFETY_PLC}
    )
    assert bad.status_code == 401


def test_whole_graph_reads_beyond_the_limit_are_503_with_retry_after(plant: Callable[[bool], ApiEnv]) -> None:
    """Each of these reads the whole graph (seconds of CPU on one a scanner inflated, in the process that
    also runs the sensor): past ``concurrent_graph_reads`` at once they are refused, not queued."""
    env = plant(True)
    reads = env.app.state.graph_reads
    held = 0
    while reads.acquire(blocking=False):  # every permit taken, as running requests would hold them
        held += 1
    assert held == env.settings.concurrent_graph_reads == 2
    routes = {
        PATHS: {"source": JUMP_HOST, "target": SAFETY_PLC},
        "/api/v1/graph": {},
        "/api/v1/graph.graphml": {},
    }
    try:
        for route, params in routes.items():
            r = env.client.get(route, headers=env.auth("viewer"), params=params)
            assert r.status_code == 503, (route, r.text)
            assert r.headers["Retry-After"] == "2" and r.json()["error"]["code"] == "graph_busy"
    finally:
        for _ in range(held):
            reads.release()
    for route, params in routes.items():  # and each gave its permit back
        assert env.client.get(route, headers=env.auth("viewer"), params=params).status_code == 200
    assert reads.acquire(blocking=False) and reads.acquire(blocking=False)


def test_the_cli_prints_the_same_document(
    plant: Callable[[bool], ApiEnv], capsys: pytest.CaptureFixture[str]
) -> None:
    env = plant(True)
    api = _get(env, source=JUMP_HOST, target=SAFETY_PLC, max_hops=3, directed="false", limit=5).json()
    assert env.settings.policy_path is not None
    args = ["graph", "paths", JUMP_HOST, SAFETY_PLC, "--db", str(env.settings.db_path), "--json"]
    assert (
        main(
            [
                *args,
                "--max-hops",
                "3",
                "--undirected",
                "--limit",
                "5",
                "--policy",
                str(env.settings.policy_path),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out) == api
    assert len(api["paths"]) == 2 and api["policy_loaded"]
