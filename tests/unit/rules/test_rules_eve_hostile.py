"""Hostile Suricata EVE alert lines: counted or clamped, never an exception that stops the follower or
an integer SQLite cannot store (which would fail the whole alert batch)."""

from __future__ import annotations

import copy
import json
import sqlite3
from typing import Any

import pytest
from test_rules_eve_ingest import SURICATA_ALERT

from rules.eve_ingest import EveIngester
from sensor.records import Alert


def _feed(rec: dict[str, Any]) -> tuple[list[Alert], EveIngester]:
    out: list[Alert] = []
    ingester = EveIngester(out.append)
    ingester.line(json.dumps(rec).encode())
    return out, ingester


@pytest.mark.parametrize("mitre", [5, None, {"a": 1}, 1.5, True])
def test_mitre_metadata_that_is_not_a_list_is_ignored(mitre: Any) -> None:
    rec = copy.deepcopy(SURICATA_ALERT)
    rec["alert"]["metadata"] = {"mitre_technique_id": mitre}
    out, _ = _feed(rec)
    assert len(out) == 1 and out[0].mitre == ()


def test_mitre_metadata_string_is_one_technique() -> None:
    rec = copy.deepcopy(SURICATA_ALERT)
    rec["alert"]["metadata"] = {"mitre_technique_id": "T0855"}
    out, _ = _feed(rec)
    assert out[0].mitre == ("T0855",)


@pytest.mark.parametrize("field", ["signature_id", "gid", "rev"])
def test_rule_numbers_past_32_bits_reject_the_alert(field: str) -> None:
    rec = copy.deepcopy(SURICATA_ALERT)
    rec["alert"][field] = 10**30
    out, ingester = _feed(rec)
    if field == "signature_id":
        assert out == [] and ingester.counters["bad_alerts"] == 1
    else:
        assert len(out) == 1
        assert out[0].rule == "1:2250005:2" if field == "gid" else out[0].rule == "1:2250005:1"


@pytest.mark.parametrize(("field", "value"), [("src_port", 10**30), ("dest_port", 70000), ("flow_id", 2**64)])
def test_out_of_range_flow_numbers_are_dropped_to_zero(field: str, value: int) -> None:
    rec = copy.deepcopy(SURICATA_ALERT)
    rec[field] = value
    out, _ = _feed(rec)
    assert len(out) == 1 and out[0].flow is not None
    flow = out[0].flow
    assert {"src_port": flow.client_port, "dest_port": flow.server_port, "flow_id": flow.flow_id}[field] == 0
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a INTEGER, b INTEGER, c INTEGER, d INTEGER)")
    conn.execute(
        "INSERT INTO t VALUES (?, ?, ?, ?)", (out[0].signature_id, out[0].rev, flow.flow_id, flow.client_port)
    )
