"""Detection by content, the generated tables and the small code helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
from opcua_wire import conversation, hel

from sensor.dissectors.base import Probe
from sensor.dissectors.opcua import OpcUaDissector, codes, gen_nodeids


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (hel(), Probe.YES),
        (conversation()[2][1], Probe.YES),  # OPN
        (conversation()[4][1], Probe.YES),  # MSG mid-stream
        (b"HE", Probe.MORE),
        (b"MSGF\x40\x00", Probe.MORE),
        (b"GET / HTTP/1.1\r\n", Probe.NO),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", Probe.NO),  # TLS ClientHello
        (b"MSGF\x04\x00\x00\x00\x00\x00\x00\x00", Probe.NO),  # size below a secure header
        (b"MSGZ\x40\x00\x00\x00", Probe.NO),
        (b"HELF\xff\xff\xff\xff", Probe.NO),
        (b"\x00\x01\x00\x00\x00\x06\x01\x03", Probe.NO),  # Modbus/TCP
    ],
)
def test_probe(data: bytes, expected: Probe) -> None:
    assert OpcUaDissector().probe(data, True) is expected


def test_dissector_identity() -> None:
    d = OpcUaDissector()
    assert d.name == "opcua" and d.ports == frozenset({4840, 4843})


def test_generated_tables_are_up_to_date(tmp_path: Path) -> None:
    assert gen_nodeids.main([str(tmp_path)]) == 0
    here = Path(gen_nodeids.__file__).parent
    for name in ("nodeids_generated.py", "statuscodes_generated.py"):
        assert (tmp_path / name).read_text() == (here / name).read_text(), f"regenerate {name}"


def test_service_table_facts() -> None:
    assert codes.encoding_name(631) == "ReadRequest" and codes.encoding_name(634) == "ReadResponse"
    assert codes.encoding_name(397) == "ServiceFault"
    assert codes.is_service_encoding(12208)  # FindServersOnNetworkRequest
    assert not codes.is_service_encoding(811)  # DataChangeNotification is not a service
    assert codes.service_base("CreateSessionRequest") == "CreateSession"


def test_status_names() -> None:
    assert codes.status_name(0) == "Good"
    assert codes.status_name(0x80790000) == "BadNoSubscription"
    assert codes.status_name(0x80790400) == "BadNoSubscription"  # info bits ignored
    assert codes.status_name(0x80FF0000).startswith("Bad_0x")
