"""The project's own OPC UA captures (pcaps/opcua-*.pcap, made by pcaps/generate/opcua_gen.py)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from sensor.cli import main

PCAPS = Path(__file__).resolve().parents[5] / "pcaps"
SERVER_URI = "urn:zonewarden:test:opcua-server"
CLIENT_URI = "urn:zonewarden:test:opcua-client"
B256 = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256"


def replay(name: str, tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    path = PCAPS / name
    if not path.exists():
        pytest.skip(f"{name} not generated (pcaps/generate/opcua_gen.py)")
    eve = tmp_path / "eve.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["replay", str(path), "--eve", str(eve), "--summary-json", "-"]) == 0
    text = buf.getvalue()
    summary = json.loads(text[text.index("{") :])["opcua"]
    events = [json.loads(line) for line in eve.read_text().splitlines() if line.strip()]
    return summary, events


def test_none_capture_services_and_server_identity(tmp_path: Path) -> None:
    summary, events = replay("opcua-asyncua-none.pcap", tmp_path)
    assert summary["security_modes"] == {"None": 1, "Sign": 0, "SignAndEncrypt": 0}
    names = summary["services_by_name"]
    for service in (
        "CreateSession",
        "ActivateSession",
        "Browse",
        "Read",
        "Write",
        "CreateSubscription",
        "CreateMonitoredItems",
        "Publish",
        "Call",
        "CloseSession",
    ):
        assert names.get(service), service
    opcua = [e["opcua"] for e in events if e["event_type"] == "opcua" and "service" in e["opcua"]]
    create = next(e for e in opcua if e["service"] == "CreateSession")
    assert create["request"]["client_description"]["application_uri"] == CLIENT_URI
    endpoints = create["response"]["server_endpoints"]
    assert {ep["server"]["application_uri"] for ep in endpoints} == {SERVER_URI}
    write = next(e for e in opcua if e["service"] == "Write")
    assert write["request"]["nodes_to_write"][0]["value"]["value"] == {"type": "Boolean", "value": True}
    published = [
        item["value"]["value"]["value"]
        for e in opcua
        if e["service"] == "Publish" and e.get("response")
        for n in e["response"].get("notifications") or []
        for item in n.get("monitored_items") or []
    ]
    assert 23.0 in published
    call = next(e for e in opcua if e["service"] == "Call")
    assert call["request"]["methods_to_call"][0]["input_arguments"] == [{"type": "Int32", "value": 7}]
    assert "opcua.anonymous_login" in summary["anomalies_by_kind"]


def test_basic256sha256_capture_certificates_and_mode(tmp_path: Path) -> None:
    summary, events = replay("opcua-asyncua-basic256sha256.pcap", tmp_path)
    assert summary["security_modes"] == {"None": 0, "Sign": 0, "SignAndEncrypt": 1}
    assert summary["security_policies"] == [B256]
    assert summary["services_by_nodeid"] == {}  # everything after OPN is encrypted
    assert (
        summary["messages_by_type"]["MSG"] == summary["encrypted_chunks"] - summary["messages_by_type"]["CLO"]
    )
    certs = [e["certificate"] for e in events if e["event_type"] == "certificate"]
    by_presenter = {c["presenter"]: c for c in certs}
    assert by_presenter["client"]["san_uris"] == [CLIENT_URI]
    assert by_presenter["server"]["san_uris"] == [SERVER_URI]
    assert all(c["source"] == "opcua.opn" and c["key_size"] == 2048 and not c["self_signed"] for c in certs)
    assert not {"opcua.cert_self_signed", "opcua.cert_short_key", "opcua.cert_expired"} & set(
        summary["anomalies_by_kind"]
    )
