"""Alert list filters (server side, literal text search), 64-bit flow ids as strings, and the alert
stream following the store's insertion order with Last-Event-ID resume."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from zw_api_env import ApiEnv

from sensor.assets.graph import CommunicationGraph
from sensor.assets.inventory import Inventory
from sensor.outputs.eve import eve_record
from sensor.records import Alert, FlowRef
from sensor.store.sqlite import Store

BIG_FLOW_ID = 2**62 + 12345  # past 2^53: a JavaScript number would round it
LAST_YEAR = 1_700_000_000.0


def alert(
    ts: float,
    rule: str,
    category: str,
    severity: int,
    client: str,
    server: str,
    signature: str,
    *,
    flow_id: int = 7,
    zones: tuple[str, str] = ("", ""),
    conduit: str = "",
    count: int = 1,
) -> Alert:
    flow = FlowRef(flow_id, "1:x", "tcp", client, 40000, server, 502)
    return Alert(
        ts=ts,
        flow=flow,
        rule=rule,
        signature=signature,
        category=category,
        severity=severity,
        signature_id=9_000_001,
        app_proto="modbus",
        src_zone=zones[0],
        dest_zone=zones[1],
        conduit=conduit,
        evidence={"note": signature},
        count=count,
        last_ts=ts + count - 1,
    )


def save(db: Path, *alerts: Alert) -> None:
    store = Store(db)
    try:
        for a in alerts:
            store.handle(a)
        store.save(Inventory(), CommunicationGraph())
    finally:
        store.close()


WRITE = alert(
    LAST_YEAR + 1000,
    "policy:scada-to-control:function_not_allowed",
    "policy",
    1,
    "10.0.0.1",
    "10.0.0.2",
    "write_single_coil from the HMI to the PLC",
    flow_id=BIG_FLOW_ID,
    zones=("scada", "control"),
    conduit="scada-to-control",
)
TALKER = alert(LAST_YEAR + 5000, "anomaly:new_talker", "anomaly", 2, "10.0.0.3", "10.0.0.1", "new talker")
EXPIRED = alert(
    LAST_YEAR + 9000, "cert:expired_in_use", "certificate", 3, "10.0.0.4", "10.0.0.5", "100% expired cert"
)
REGEX_TEXT = alert(
    LAST_YEAR + 9500, "anomaly:odd_topic", "anomaly", 3, "10.0.0.6", "10.0.0.7", "topic (a+)+$ published"
)


@pytest.fixture
def alerts_env(make_env: Callable[..., ApiEnv], tmp_path: Path) -> ApiEnv:
    db = tmp_path / "zonewarden.db"
    save(db, WRITE, TALKER, EXPIRED, REGEX_TEXT)
    return make_env(db_path=db, sse_poll_seconds=0.1)


def listed(env: ApiEnv, **params: Any) -> list[str]:
    r = env.client.get("/api/v1/alerts", headers=env.auth("viewer"), params=params)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == len(page["items"])
    return sorted(a["rule"] for a in page["items"])


@pytest.mark.parametrize(
    ("params", "rules"),
    [
        ({}, ["anomaly:new_talker", "anomaly:odd_topic", "cert:expired_in_use", WRITE.rule]),
        ({"severity": 2}, ["anomaly:new_talker"]),
        ({"category": "certificate"}, ["cert:expired_in_use"]),
        ({"rule": WRITE.rule}, [WRITE.rule]),
        ({"ip": "10.0.0.1"}, ["anomaly:new_talker", WRITE.rule]),  # either side
        ({"src_ip": "10.0.0.1"}, [WRITE.rule]),
        ({"dest_ip": "10.0.0.1"}, ["anomaly:new_talker"]),
        ({"zone": "control"}, [WRITE.rule]),
        ({"zone": "scada"}, [WRITE.rule]),
        ({"since": LAST_YEAR + 4000}, ["anomaly:new_talker", "anomaly:odd_topic", "cert:expired_in_use"]),
        ({"until": LAST_YEAR + 4000}, [WRITE.rule]),
        ({"since": LAST_YEAR + 2000, "until": LAST_YEAR + 6000}, ["anomaly:new_talker"]),
        ({"q": "WRITE_SINGLE"}, [WRITE.rule]),  # case-insensitive
        ({"q": "scada-to"}, [WRITE.rule]),  # the conduit
        ({"q": "100%"}, ["cert:expired_in_use"]),
        ({"q": "%"}, ["cert:expired_in_use"]),  # a LIKE wildcard, taken literally
        ({"q": "o_t"}, []),  # "_" is not "any character"
        ({"category": "anomaly", "severity": 3}, ["anomaly:odd_topic"]),
    ],
)
def test_alert_filters_select_exactly(alerts_env: ApiEnv, params: dict[str, Any], rules: list[str]) -> None:
    assert listed(alerts_env, **params) == sorted(rules)


def test_alert_status_filter_follows_triage(alerts_env: ApiEnv) -> None:
    alert_id = WRITE.alert_id
    r = alerts_env.client.post(f"/api/v1/alerts/{alert_id}/ack", headers=alerts_env.auth("analyst"), json={})
    assert r.status_code == 200
    assert listed(alerts_env, status="acknowledged") == [WRITE.rule]
    assert WRITE.rule not in listed(alerts_env, status="open")


def test_A9_regex_shaped_search_is_a_literal_substring(alerts_env: ApiEnv) -> None:
    assert listed(alerts_env, q="(a+)+$") == ["anomaly:odd_topic"]
    assert listed(alerts_env, q="(A+)+$") == ["anomaly:odd_topic"]
    assert listed(alerts_env, q="a" * 190 + "!") == []
    assert listed(alerts_env, q=".*") == []  # not "anything"


@pytest.mark.parametrize(
    "params",
    [
        {"since": 0, "until": 11 * 366 * 86400},  # over 10 years (A8)
        {"since": 2_000_000_000, "until": 1_000_000_000},  # ends before it starts
        {"since": -1},
        {"until": 2**40},
        {"severity": 0},
        {"ip": "not an address"},
        {"q": "x" * 201},
        {"regex": "(a+)+$"},  # no such filter
    ],
)
def test_A8_bad_alert_filters_are_422(alerts_env: ApiEnv, params: dict[str, Any]) -> None:
    r = alerts_env.client.get("/api/v1/alerts", headers=alerts_env.auth("viewer"), params=params)
    assert r.status_code == 422, (params, r.text)


def test_flow_id_is_a_string_in_the_api_and_an_integer_in_eve(alerts_env: ApiEnv) -> None:
    h = alerts_env.auth("viewer")
    r = alerts_env.client.get(f"/api/v1/alerts/{WRITE.alert_id}", headers=h)
    doc = r.json()
    assert doc["flow_id"] == str(BIG_FLOW_ID)
    assert doc["eve"]["flow_id"] == str(BIG_FLOW_ID)
    assert f'"flow_id":"{BIG_FLOW_ID}"' in r.text.replace(" ", "")
    listed_doc = alerts_env.client.get("/api/v1/alerts", headers=h, params={"rule": WRITE.rule}).json()
    assert listed_doc["items"][0]["flow_id"] == str(BIG_FLOW_ID)
    assert eve_record(WRITE)["flow_id"] == BIG_FLOW_ID  # EVE keeps Suricata's integer
    schema = alerts_env.client.get("/api/v1/openapi.json", headers=h).json()["components"]["schemas"]
    flow_id = schema["Alert"]["properties"]["flow_id"]
    assert {"type": "string"} in flow_id["anyOf"] and "2^53" in flow_id["description"]


def stream(env: ApiEnv, headers: dict[str, str] | None = None, **params: Any) -> list[dict[str, Any]]:
    """Every event of one stream that ends by itself (``wait``)."""
    with env.client.stream(
        "GET",
        "/api/v1/alerts/stream",
        headers={**env.auth("viewer"), **(headers or {})},
        params={"wait": "0", **params},
    ) as r:
        assert r.status_code == 200
        body = r.read().decode()
    return parse_events(body)


def parse_events(body: str) -> list[dict[str, Any]]:
    events = []
    for block in body.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":"))
        if lines:
            assert lines["event"] == "alert"
            events.append({"id": int(lines["id"]), **json.loads(lines["data"])})
    return events


def head_seq(db: Path) -> int:
    store = Store(db, readonly=True)
    try:
        return store.last_alert_seq()
    finally:
        store.close()


def test_stream_follows_insertion_order_not_packet_time(alerts_env: ApiEnv) -> None:
    db = alerts_env.settings.db_path
    assert stream(alerts_env) == []  # from now: nothing new yet
    everything = stream(alerts_env, since=0)
    assert [e["id"] for e in everything] == sorted(e["id"] for e in everything)
    assert len(everything) == 4 and all(e["id"] == e["seq"] for e in everything)
    before = head_seq(db)
    # A replay of a much older capture into the same store: its alerts are new to the stream.
    ancient = alert(1_000_000_000.0, "anomaly:from_2001", "anomaly", 2, "10.0.0.8", "10.0.0.9", "old capture")
    save(db, ancient)
    resumed = stream(alerts_env, {"Last-Event-ID": str(before)})
    assert [e["rule"] for e in resumed] == ["anomaly:from_2001"]
    assert resumed[0]["id"] == before + 1 and resumed[0]["flow_id"] == "7"
    # The same alert again, unchanged (a capture replayed twice): not streamed again.
    save(db, ancient)
    assert stream(alerts_env, {"Last-Event-ID": str(before + 1)}) == []
    # Counted again (a larger count) or triaged: streamed again, with a new id.
    save(
        db, alert(1_000_000_000.0, "anomaly:from_2001", "anomaly", 2, "10.0.0.8", "10.0.0.9", "old", count=5)
    )
    alerts_env.client.post(
        f"/api/v1/alerts/{WRITE.alert_id}/close", headers=alerts_env.auth("analyst"), json={}
    )
    again = stream(alerts_env, {"Last-Event-ID": str(before + 1)})
    assert [(e["rule"], e.get("count"), e["status"]) for e in again] == [
        ("anomaly:from_2001", 5, "open"),
        (WRITE.rule, 1, "closed"),
    ]
    assert [e["id"] for e in again] == [before + 2, before + 3]


def test_stream_delivers_an_old_packet_time_alert_written_while_it_is_open(alerts_env: ApiEnv) -> None:
    db = alerts_env.settings.db_path
    with alerts_env.client.stream(
        "GET", "/api/v1/alerts/stream", headers=alerts_env.auth("viewer"), params={"wait": "3"}
    ) as r:
        # The response has started: the stream is open, so what is committed from here on is new to it
        # (no guess at how long opening takes).
        assert r.status_code == 200
        save(db, alert(1_000_000_000.0, "anomaly:late", "anomaly", 1, "10.0.0.10", "10.0.0.11", "late"))
        body = r.read().decode()
    assert [e["rule"] for e in parse_events(body)] == ["anomaly:late"]


@pytest.mark.parametrize("last_id", ["abc", "fba50008e5ede486", "-1", "99999999999999999999"])
def test_stream_with_an_unusable_last_event_id_starts_from_now(alerts_env: ApiEnv, last_id: str) -> None:
    assert stream(alerts_env, {"Last-Event-ID": last_id}) == []
    assert len(stream(alerts_env, {"Last-Event-ID": "0"})) == 4
