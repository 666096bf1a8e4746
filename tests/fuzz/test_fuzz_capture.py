"""Hypothesis fuzzing of the capture file reader: only CaptureError may ever escape."""

from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.capture.file import FileSource, open_capture
from sensor.errors import CaptureError
from sensor.limits import Limits

SMALL_LIMITS = Limits(max_record_bytes=512)

PCAP_HEADERS = [
    struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1),
    struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 0, 113),
]
PCAPNG_HEADS = [
    # SHB (28 bytes) + IDB (20 bytes), little- and big-endian
    struct.pack("<IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    + struct.pack("<IIHHII", 1, 20, 1, 0, 0, 20),
    struct.pack(">IIIHHqI", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1, 28)
    + struct.pack(">IIHHII", 1, 20, 0, 0, 0, 20),
]


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, size: int, /) -> bytes:
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk

    def close(self) -> None:
        pass


def read_everything(data: bytes, limits: Limits = SMALL_LIMITS) -> None:
    try:
        source = FileSource("fuzz", _Bytes(data), limits)
        for frame in source.frames():
            assert len(frame.data) <= limits.max_record_bytes
        assert source.counters.truncated_records <= 1
    except CaptureError as exc:
        assert "\n" not in str(exc)


def pcap_records() -> st.SearchStrategy[bytes]:
    record = st.tuples(
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.sampled_from([0, 1, 60, 600, 0xFFFFFFFF]) | st.integers(0, 2**32 - 1),
        st.binary(max_size=80),
    ).map(lambda r: struct.pack("<IIII", r[0], r[1], r[2], len(r[3])) + r[3])
    return st.lists(record, max_size=8).map(b"".join)


def pcapng_blocks() -> st.SearchStrategy[bytes]:
    blk = st.tuples(
        st.sampled_from([0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 0xA, 0xBAD, 0x12345678]),
        st.binary(max_size=96),
        st.booleans(),
        st.integers(0, 2**32 - 1),
    ).map(
        lambda b: (
            struct.pack("<II", b[0], 12 + len(b[1]) if b[2] else b[3])
            + b[1]
            + struct.pack("<I", 12 + len(b[1]))
        )
    )
    return st.lists(blk, max_size=8).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    read_everything(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PCAP_HEADERS), pcap_records(), st.binary(max_size=40))
def test_fuzz_pcap_records(header: bytes, records: bytes, tail: bytes) -> None:
    read_everything(header + records + tail)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PCAPNG_HEADS), pcapng_blocks(), st.binary(max_size=40))
def test_fuzz_pcapng_blocks(head: bytes, blocks: bytes, tail: bytes) -> None:
    read_everything(head + blocks + tail)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(PCAP_HEADERS + PCAPNG_HEADS), st.binary(max_size=300), st.integers(0, 400))
def test_fuzz_gzip(head: bytes, body: bytes, cut: int) -> None:
    packed = gzip.compress(head + body)
    read_everything(packed[: len(packed) - cut % (len(packed) + 1)])


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_open_capture_on_files(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "f"
        path.write_bytes(data)
        try:
            with open_capture(path, SMALL_LIMITS) as source:
                for _ in source.frames():
                    pass
        except CaptureError as exc:
            assert str(exc).startswith(f"{path}: ")
