"""The project's own captures (pcaps/mqtt-*-mosquitto.pcap, made by pcaps/generate/mqtt_gen.py).

Counts were checked against tshark 4.0 on the same files (it resolves the v5 topic aliases too).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mqtt_testkit import REPO, cli_summary, run_pcap

from sensor.dissectors.mqtt import MqttDissector, MqttPacket
from sensor.dissectors.mqtt.frames import Connect, Publish
from sensor.dissectors.tls import TlsDissector, TlsHandshake
from sensor.records import CertificateObservation, ProtocolAnomaly

PCAPS = REPO / "pcaps"


def _need(name: str) -> Path:
    path = PCAPS / name
    if not path.exists():
        pytest.skip(f"{name} not generated (python -m pcaps.generate.mqtt_gen)")
    return path


def test_v311_capture() -> None:
    events, sec = run_pcap(_need("mqtt-v311-mosquitto.pcap"), MqttDissector())
    assert sec["packets_by_type"] == {
        "CONNACK": 2, "CONNECT": 2, "DISCONNECT": 1, "PUBACK": 3, "PUBCOMP": 2, "PUBLISH": 7, "PUBREC": 2,
        "PUBREL": 2, "SUBACK": 1, "SUBSCRIBE": 1, "UNSUBACK": 1, "UNSUBSCRIBE": 1,
    }  # fmt: skip
    assert sec["versions"] == {"3.1.1": 2}
    assert sec["client_ids"] == ["intruder", "line1-plc-gw"]
    assert sec["topics"] == ["plant/line1/status", "plant/line1/telemetry"]
    assert sec["anomalies_by_kind"] == {"mqtt.auth_failure": 1}
    connects = [e.message for e in events if isinstance(e, MqttPacket) and isinstance(e.message, Connect)]
    gw = connects[0]
    assert gw.will is not None and gw.will.topic == "plant/line1/status" and gw.will.retain
    assert all(c.password_present and c.password is None for c in connects)
    retained = [e.message for e in events if isinstance(e, MqttPacket) and isinstance(e.message, Publish)]
    assert any(p.retain and p.topic == "plant/line1/status" for p in retained)


def test_v5_capture_aliases_and_refused_login() -> None:
    events, sec = run_pcap(_need("mqtt-v5-mosquitto.pcap"), MqttDissector())
    assert sec["versions"] == {"5.0": 2}
    assert sec["topics"] == ["plant/line2/setpoint", "plant/line2/telemetry/temp"]
    pubs = [e for e in events if isinstance(e, MqttPacket) and isinstance(e.message, Publish)]
    aliased = [
        p.message for p in pubs if isinstance(p.message, Publish) and p.message.topic_alias and p.to_server
    ]
    assert len(aliased) == 3  # bind + two uses with an empty topic
    assert {p.topic for p in aliased} == {"plant/line2/telemetry/temp"}
    refusals = [e for e in events if isinstance(e, ProtocolAnomaly) and e.kind == "mqtt.auth_failure"]
    assert len(refusals) == 1 and "not_authorized (135)" in refusals[0].detail
    connect = next(e.message for e in events if isinstance(e, MqttPacket) and isinstance(e.message, Connect))
    assert connect.properties["topic_alias_maximum"] == 8
    assert connect.will is not None and connect.will.properties["will_delay_interval"] == 5
    assert all(not (isinstance(e, ProtocolAnomaly) and e.kind == "mqtt.invalid_topic_alias") for e in events)


def test_tls_capture_sni_certificates_and_hidden() -> None:
    events, sec = run_pcap(_need("mqtt-tls-mosquitto.pcap"), TlsDissector())
    assert sec["handshakes"] == 2
    assert sec["versions"] == {"TLS 1.2": 1, "TLS 1.3": 1}
    assert sec["sni"] == ["localhost"]
    assert sec["certificates_hidden"] == 1 and sec["certificate_requests"] == 1
    certs = [e for e in events if isinstance(e, CertificateObservation)]
    assert sec["certificates"] == len(certs) >= 2
    leaves = {(c.source, c.cert.subject) for c in certs if c.chain_index == 0}
    assert ("tls.server", "CN=localhost,O=zonewarden sample plant") in leaves
    assert ("tls.client", "CN=line1-gateway,O=zonewarden sample plant") in leaves
    hellos = [e for e in events if isinstance(e, TlsHandshake) and e.message == "server_hello"]
    assert [h.certificates_hidden for h in hellos] == [False, True]
    assert sec["anomalies_by_kind"] == {}


@pytest.mark.parametrize(
    ("name", "section", "dissector"),
    [
        ("mqtt-v311-mosquitto.pcap", "mqtt", MqttDissector),
        ("mqtt-v5-mosquitto.pcap", "mqtt", MqttDissector),
        ("mqtt-tls-mosquitto.pcap", "tls", TlsDissector),
    ],
)
def test_cli_summary_agrees_with_direct_feed(name: str, section: str, dissector: type) -> None:
    path = _need(name)
    summary = cli_summary(path)
    if summary is None:
        pytest.skip("zonewarden replay cannot run yet")
    _, direct = run_pcap(path, dissector())
    assert summary[section] == direct
