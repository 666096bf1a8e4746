"""The public captures in ../shared/pcaps/public against tshark's view (ORACLE.json), and P6.

Those files are never copied into the repository; every test here skips when the folder is absent.
"""

from __future__ import annotations

import gzip
import json
import random
import struct
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from capture_builders import read_all

from sensor.capture.file import FileSource, open_capture
from sensor.errors import CaptureError

REPO_ROOT = Path(__file__).resolve().parents[4]
PUBLIC = REPO_ROOT.parent / "shared" / "pcaps" / "public"
ORACLE = PUBLIC / "ORACLE.json"


@cache
def oracle() -> dict[str, Any]:
    files: dict[str, Any] = json.loads(ORACLE.read_text())["files"]
    return files


def public_names() -> list[str]:
    return sorted(oracle()) if ORACLE.is_file() else ["(public captures absent)"]


def require_public(name: str) -> Path:
    if not ORACLE.is_file():
        pytest.skip(f"{PUBLIC} is absent")
    return PUBLIC / name


@pytest.mark.parametrize("name", public_names())
def test_public_capture_matches_tshark(name: str) -> None:
    path = require_public(name)
    expected = oracle()[name]
    frames, source = read_all(path)
    assert len(frames) == expected["packets"]
    assert frames[0].ts == pytest.approx(expected["first_packet_epoch"], abs=1e-6)
    assert frames[-1].ts == pytest.approx(expected["last_packet_epoch"], abs=1e-6)
    # tshark's protocol hierarchy counts frame (wire) bytes.
    assert sum(f.wire_len for f in frames) == expected["protocol_hierarchy"][0]["bytes"]
    assert source.warnings == []
    assert source.counters.packets == expected["packets"]
    encapsulation = {"ether": 1, "null": 0, "linux-sll2": 276}[expected["capinfos"]["encapsulation"]]
    assert {f.linktype for f in frames} == {encapsulation}


# --- P6: mutated corpus --------------------------------------------------------------------------


def record_spans(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of every record (pcap) or block (pcapng) of a well-formed capture."""
    spans = []
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        order = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
        pos = 0
        while pos + 8 <= len(data):
            (length,) = struct.unpack_from(order + "I", data, pos + 4)
            spans.append((pos, length))
            pos += length
    else:
        order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        pos = 24
        while pos + 16 <= len(data):
            (caplen,) = struct.unpack_from(order + "I", data, pos + 8)
            spans.append((pos, 16 + caplen))
            pos += 16 + caplen
    return spans


def zzuf(data: bytes, rng: random.Random, ratio: float = 0.004) -> bytes:
    """Flip random bits in ``ratio`` of all bytes, headers included (like ``zzuf -r 0.004``)."""
    out = bytearray(data)
    for _ in range(max(1, int(len(out) * ratio))):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def mangle_records(data: bytes, rng: random.Random, ratio: float = 0.02) -> bytes:
    """In ``ratio`` of the records, overwrite a few bytes anywhere in the record, its header and
    length fields included (harsher than ``editcap -E 0.02``, which spares the headers)."""
    out = bytearray(data)
    for offset, length in record_spans(data):
        if rng.random() < ratio:
            for _ in range(rng.randint(1, 4)):
                out[offset + rng.randrange(max(1, min(length, 32)))] = rng.randrange(256)
    return bytes(out)


def read_mutated(name: str, data: bytes) -> int:
    """Read a mutated capture; it must end normally or with a one-line CaptureError."""
    source: FileSource | None = None
    count = 0
    try:
        source = FileSource(name, _BytesStream(data))
        for _ in source.frames():
            count += 1
    except CaptureError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{name}: "), message
        if source is not None and "corrupt record" in message:
            assert source.counters.corrupt_records == 1
    else:
        assert source.counters.truncated_records <= 1
        assert source.counters.corrupt_records == 0
    return count


class _BytesStream:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size: int, /) -> bytes:
        chunk = bytes(self._data[self._pos : self._pos + size])
        self._pos += len(chunk)
        return chunk

    def close(self) -> None:
        pass


@pytest.mark.parametrize("name", public_names())
def test_P6_mutated_public_captures_end_normally_or_with_capture_error(name: str) -> None:
    path = require_public(name)
    data = path.read_bytes()
    expected = oracle()[name]["packets"]
    seed = sum(name.encode())
    outcomes = []
    for round_ in range(4):
        rng = random.Random(seed * 10 + round_)
        outcomes.append(read_mutated(name, zzuf(data, rng)))
        outcomes.append(read_mutated(name, mangle_records(data, rng)))
    # A flipped length can only split or merge records; it never invents many more of them.
    assert max(outcomes) <= 2 * expected + len(data) // 16


def test_P6_mutation_changes_the_bytes() -> None:
    name = public_names()[0]
    data = require_public(name).read_bytes()
    rng = random.Random(1)
    assert zzuf(data, rng) != data
    assert mangle_records(data, rng, ratio=1.0) != data


def test_public_gzip_of_a_pcapng_capture(tmp_path: Path) -> None:
    require_public("")
    names = [n for n in public_names() if oracle()[n]["capinfos"]["file_type"] == "pcapng"]
    if not names:
        pytest.skip(f"no public pcapng capture in {PUBLIC}")
    plain, _ = read_all(PUBLIC / names[0])
    packed_path = tmp_path / "copy.gz"
    packed_path.write_bytes(gzip.compress((PUBLIC / names[0]).read_bytes()))
    with open_capture(packed_path) as source:
        assert list(source.frames()) == plain
