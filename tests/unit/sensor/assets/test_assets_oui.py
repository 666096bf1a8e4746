"""OUI vendor lookup from a Wireshark manuf file: /24, /28 and /36 blocks, longest prefix first."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.assets.oui import DEFAULT_MANUF_PATHS, OuiDatabase

MANUF = """\
# comment line
00:00:0C\tCisco\tCisco Systems, Inc
00:90:E8\tMoxaTech\tMoxa Technologies Corp., Ltd.
70:B3:D5\tIEEERegi\tIEEE Registration Authority
70:B3:D5:00:00:00/28\tBlockA\tBlock A Industrial
00:1B:C5:00:10:00/36\tOpenRBco\tOpenRB.com, Direct SIA
08:00:27\tPCSSystemtec
bad line without tab
"""


@pytest.fixture
def db(tmp_path: Path) -> OuiDatabase:
    path = tmp_path / "manuf"
    path.write_text(MANUF)
    return OuiDatabase(path)


def test_oui_24_bit_block_gives_long_name(db: OuiDatabase) -> None:
    assert db.lookup("00:90:e8:4c:83:db") == "Moxa Technologies Corp., Ltd."
    assert db.lookup("00:00:0c:01:02:03") == "Cisco Systems, Inc"


def test_oui_short_name_used_when_no_long_name(db: OuiDatabase) -> None:
    assert db.lookup("08:00:27:aa:bb:cc") == "PCSSystemtec"


def test_oui_28_bit_block_wins_over_its_24_bit_parent(db: OuiDatabase) -> None:
    assert db.lookup("70:b3:d5:01:02:03") == "Block A Industrial"  # inside 70:B3:D5:0/28
    assert db.lookup("70:b3:d5:f1:02:03") == "IEEE Registration Authority"  # outside it


def test_oui_36_bit_block(db: OuiDatabase) -> None:
    assert db.lookup("00:1b:c5:00:10:42") == "OpenRB.com, Direct SIA"
    assert db.lookup("00:1b:c5:00:20:42") is None


def test_oui_no_vendor_for_local_group_zero_and_garbage(db: OuiDatabase) -> None:
    assert db.lookup("02:00:0c:01:02:03") is None  # locally administered
    assert db.lookup("01:00:0c:cc:cc:cc") is None  # group address
    assert db.lookup("00:00:00:00:00:00") is None  # loopback pseudo header
    assert db.lookup("not a mac") is None
    assert db.lookup("00:00:0c") is None


def test_oui_parsed_lazily_on_first_lookup(db: OuiDatabase) -> None:
    assert db._by_bits is None
    db.lookup("00:00:0c:01:02:03")
    assert db._by_bits is not None


def test_oui_missing_file_means_no_vendor(tmp_path: Path) -> None:
    assert OuiDatabase(tmp_path / "absent").lookup("00:00:0c:01:02:03") is None


def test_oui_real_wireshark_manuf_when_installed() -> None:
    path = next((p for p in DEFAULT_MANUF_PATHS if p.is_file()), None)
    if path is None:
        pytest.skip("Wireshark manuf file not installed (apt-get install tshark)")
    db = OuiDatabase(path)
    assert db.lookup("00:90:e8:4c:83:db") == "Moxa Technologies Corp., Ltd."
    assert db.lookup("00:1b:c5:00:10:01") == "OpenRB.com, Direct SIA"
