"""Classic pcap reading: formats, link types, gzip, and hostile inputs P1, P2, P3, P5."""

from __future__ import annotations

import gzip
import io
import tracemalloc
from pathlib import Path

import pytest
from capture_builders import (
    ETH_TCP_502,
    assert_one_line,
    boundaries,
    frame_bytes,
    pcap_file,
    pcap_header,
    pcap_record,
    read_all,
    read_until_error,
    write,
)

from sensor.capture.file import READ_CHUNK, FileSource, _GzipStream, open_capture
from sensor.errors import CaptureError
from sensor.limits import Limits

RECORDS = [
    (1_700_000_000, 123_456, ETH_TCP_502),
    (1_700_000_001, 0, frame_bytes(1, 1)),
    (1_700_000_001, 999_999, frame_bytes(2, 200)),
    (1_700_000_002, 500_000, b""),
    (1_700_000_003, 7, frame_bytes(3, 61)),
]


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("nsec", [False, True])
def test_pcap_both_byte_orders_and_resolutions(tmp_path: Path, order: str, nsec: bool) -> None:
    path = write(tmp_path, "x.cap", pcap_file(RECORDS, order=order, nsec=nsec))
    frames, source = read_all(path)
    units = 1e9 if nsec else 1e6
    assert [f.data for f in frames] == [r[2] for r in RECORDS]
    assert [f.ts for f in frames] == [sec + frac / units for sec, frac, _ in RECORDS]
    assert {f.linktype for f in frames} == {1}
    assert [f.wire_len for f in frames] == [len(r[2]) for r in RECORDS]
    assert {f.interface for f in frames} == {0}
    assert source.counters.packets == len(RECORDS)
    assert source.counters.bytes == sum(len(r[2]) for r in RECORDS)
    assert source.warnings == []


def test_pcap_nanosecond_timestamp_keeps_sub_microsecond_digits(tmp_path: Path) -> None:
    path = write(tmp_path, "ns", pcap_file([(1_600_000_000, 123_456_789, b"x")], nsec=True))
    [frame], _ = read_all(path)
    assert frame.ts == pytest.approx(1_600_000_000.123456789, abs=1e-7)
    assert frame.ts != pytest.approx(1_600_000_000.123456, abs=5e-7)


def test_pcap_wire_len_and_caplen_differ(tmp_path: Path) -> None:
    data = pcap_header(snaplen=64) + pcap_record("<", 1, 2, ETH_TCP_502[:64], wire_len=1514)
    [frame], source = read_all(write(tmp_path, "snap", data))
    assert frame.data == ETH_TCP_502[:64]
    assert frame.wire_len == 1514
    assert source.counters.records_over_snaplen == 0


@pytest.mark.parametrize("linktype", [0, 1, 101, 108, 113, 228, 229, 276])
def test_pcap_supported_linktypes_pass_through(tmp_path: Path, linktype: int) -> None:
    path = write(tmp_path, "lt", pcap_file(RECORDS[:1], linktype=linktype))
    [frame], _ = read_all(path)
    assert frame.linktype == linktype


def test_pcap_fcs_bits_in_linktype_field_are_masked(tmp_path: Path) -> None:
    # draft-ietf-opsawg-pcap §4: the upper bits of the LinkType field carry the FCS length.
    path = write(tmp_path, "fcs", pcap_file(RECORDS[:1], linktype=0x14000001))
    [frame], _ = read_all(path)
    assert frame.linktype == 1


def test_pcap_extension_is_not_trusted(tmp_path: Path) -> None:
    path = write(tmp_path, "capture.pcapng.txt", pcap_file(RECORDS))
    frames, _ = read_all(path)
    assert len(frames) == len(RECORDS)


def test_pcap_larger_than_one_read_chunk(tmp_path: Path) -> None:
    # Records straddle every chunk boundary: 2.5 read chunks of odd-sized records.
    count = (READ_CHUNK * 5 // 2) // (16 + 97) + 1
    records = [(i, i % 1_000_000, frame_bytes(i, 97)) for i in range(count)]
    frames, source = read_all(write(tmp_path, "big", pcap_file(records)))
    assert len(frames) == count
    assert frames[-1].data == frame_bytes(count - 1, 97)
    assert all(f.data[-4:] == i.to_bytes(4, "big") for i, f in enumerate(frames))
    assert source.counters.packets == count
    assert source.counters.bytes == 97 * count


def test_pcap_record_larger_than_read_chunk_with_raised_limit(tmp_path: Path) -> None:
    big = bytes(range(256)) * (READ_CHUNK // 256 + 3000)
    data = pcap_file([(1, 0, b"a"), (2, 0, big), (3, 0, b"c")])
    frames, _ = read_all(write(tmp_path, "huge", data), Limits(max_record_bytes=4 * READ_CHUNK))
    assert [f.data for f in frames] == [b"a", big, b"c"]


def test_pcap_empty_after_header_has_no_frames_and_no_warning(tmp_path: Path) -> None:
    frames, source = read_all(write(tmp_path, "empty", pcap_header()))
    assert frames == []
    assert source.warnings == []
    assert source.counters.truncated_records == 0


def test_pcap_frames_can_be_iterated_only_once(tmp_path: Path) -> None:
    with open_capture(write(tmp_path, "once", pcap_file(RECORDS))) as source:
        assert len(list(source.frames())) == len(RECORDS)
        with pytest.raises(RuntimeError):
            source.frames()


# --- gzip ----------------------------------------------------------------------------------------


def test_pcap_gzip_gives_the_same_frames(tmp_path: Path) -> None:
    raw = pcap_file(RECORDS, order=">", nsec=True)
    plain, _ = read_all(write(tmp_path, "a.pcap", raw))
    packed, source = read_all(write(tmp_path, "a.pcap.gz", gzip.compress(raw)))
    assert packed == plain
    assert source.warnings == []


def test_pcap_gzip_multi_member_and_zero_padding(tmp_path: Path) -> None:
    raw = pcap_file(RECORDS)
    data = gzip.compress(raw[:50]) + gzip.compress(raw[50:]) + bytes(16)
    frames, source = read_all(write(tmp_path, "multi.gz", data))
    assert [f.data for f in frames] == [r[2] for r in RECORDS]
    assert source.warnings == []


def test_pcap_gzip_trailing_junk_is_a_warning(tmp_path: Path) -> None:
    frames, source = read_all(write(tmp_path, "junk.gz", gzip.compress(pcap_file(RECORDS)) + b"junk"))
    assert len(frames) == len(RECORDS)
    assert any("after the end of the compressed stream" in w for w in source.warnings)


def test_pcap_gzip_truncated_at_every_offset(tmp_path: Path) -> None:
    raw = pcap_file(RECORDS)
    full = [r[2] for r in RECORDS]
    packed = gzip.compress(raw)
    for cut in range(len(packed)):
        frames, error, source = read_until_error(write(tmp_path, "cut.gz", packed[:cut]))
        assert [f.data for f in frames] == full[: len(frames)]
        if error is not None:
            assert_one_line(error, tmp_path / "cut.gz")
        else:
            assert source is not None
            assert source.counters.truncated_records == 1
            assert source.warnings


def test_pcap_gzip_corrupt_deflate_data_is_a_capture_error(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(pcap_file(RECORDS * 20), compresslevel=9))
    for i in range(12, len(packed) - 8):
        packed[i] ^= 0x55
    _, error, _ = read_until_error(write(tmp_path, "bad.gz", bytes(packed)))
    assert error is not None
    assert_one_line(error, tmp_path / "bad.gz")


def test_pcap_gzip_is_streamed_not_inflated(tmp_path: Path) -> None:
    # ~40 MiB of records compress to a few hundred KiB; reading must never hold them all.
    records = [(i, 0, bytes(4000)) for i in range(10_000)]
    path = write(tmp_path, "bomb.gz", gzip.compress(pcap_file(records), compresslevel=1))
    tracemalloc.start()
    try:
        with open_capture(path) as source:
            count = sum(1 for _ in source.frames())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 10_000
    assert peak < 8 * READ_CHUNK


def test_gzip_stream_read_returns_at_most_the_size_asked() -> None:
    stream = _GzipStream(io.BytesIO(gzip.compress(bytes(5_000_000))))
    sizes = []
    while chunk := stream.read(65536):
        sizes.append(len(chunk))
    assert max(sizes) == 65536
    assert sum(sizes) == 5_000_000
    assert not stream.truncated


# --- P1: not a capture ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 3, 4, 23])
def test_P1_file_shorter_than_global_header(tmp_path: Path, size: int) -> None:
    path = write(tmp_path, "short", pcap_header()[:size])
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    assert_one_line(info.value, path, "file too short")


@pytest.mark.parametrize(
    "content",
    [
        b"GET / HTTP/1.1\r\n\r\n" + bytes(40),
        b"\x00" * 64,
        b"\xa1\xb2\xc3\xd5" + bytes(60),  # one bit away from the pcap magic
        b"PK\x03\x04" * 16,
    ],
)
def test_P1_bad_magic(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, "bad.pcap", content)
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    assert_one_line(info.value, path, "not a pcap or pcapng file")


@pytest.mark.parametrize("linktype", [2, 105, 127, 147, 0xFFFF])
def test_P1_unknown_linktype(tmp_path: Path, linktype: int) -> None:
    path = write(tmp_path, "lt.pcap", pcap_file(RECORDS, linktype=linktype))
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    assert_one_line(info.value, path, f"unsupported link type {linktype}")


def test_P1_missing_file_and_directory(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.pcap", tmp_path):
        with pytest.raises(CaptureError) as info:
            open_capture(path)
        assert_one_line(info.value, path, "cannot open")


# --- P2: truncated at every byte offset ----------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
def test_P2_truncated_at_every_byte_offset(tmp_path: Path, order: str) -> None:
    records = [pcap_record(order, sec, frac, data) for sec, frac, data in RECORDS]
    header = pcap_header(order)
    data = header + b"".join(records)
    ends = boundaries([header, *records])
    path = tmp_path / "cut.pcap"
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        if cut < len(header):
            with pytest.raises(CaptureError) as info:
                open_capture(path)
            assert_one_line(info.value, path, "file too short")
            continue
        frames, source = read_all(path)
        complete = sum(1 for end in ends[1:] if end <= cut)
        assert [f.data for f in frames] == [r[2] for r in RECORDS[:complete]], cut
        at_boundary = cut in ends
        assert source.counters.truncated_records == (0 if at_boundary else 1), cut
        assert source.counters.corrupt_records == 0
        if at_boundary:
            assert source.warnings == []
        else:
            [warning] = source.warnings
            assert warning.startswith(f"{path}: last record truncated at offset {ends[complete]}")


def test_P2_truncation_inside_a_later_read_chunk(tmp_path: Path) -> None:
    records = [(i, 0, frame_bytes(i, 1000)) for i in range(READ_CHUNK // 1000 + 50)]
    data = pcap_file(records)
    frames, source = read_all(write(tmp_path, "cut", data[:-500]))
    assert len(frames) == len(records) - 1
    assert source.counters.truncated_records == 1


# --- P3: impossible record lengths ---------------------------------------------------------------


@pytest.mark.parametrize("caplen", [0xFFFFFFFF, 0x80000000, 256 * 1024 + 1])
def test_P3_caplen_over_limit_is_corrupt_after_earlier_frames(tmp_path: Path, caplen: int) -> None:
    bad_record = pcap_record("<", 5, 0, b"abcd", caplen=caplen)
    data = pcap_file(RECORDS[:2]) + bad_record + pcap_record("<", 6, 0, b"z")
    path = write(tmp_path, "p3", data)
    frames, error, source = read_until_error(path)
    assert [f.data for f in frames] == [RECORDS[0][2], RECORDS[1][2]]
    assert error is not None
    offset = 24 + 2 * 16 + len(RECORDS[0][2]) + len(RECORDS[1][2])
    assert_one_line(error, path, f"corrupt record at offset {offset}", str(caplen))
    assert source is not None
    assert source.counters.corrupt_records == 1
    assert source.counters.packets == 2


def test_P3_limit_is_inclusive_and_configurable(tmp_path: Path) -> None:
    limits = Limits(max_record_bytes=100)
    ok = write(tmp_path, "ok", pcap_file([(1, 0, bytes(100))]))
    assert len(read_all(ok, limits)[0]) == 1
    bad = write(tmp_path, "bad", pcap_file([(1, 0, bytes(101))]))
    frames, error, _ = read_until_error(bad, limits)
    assert frames == []
    assert error is not None
    assert "exceeds the limit 100" in str(error)


def test_P3_caplen_over_snaplen_within_limit_is_accepted_and_counted(tmp_path: Path) -> None:
    data = pcap_header(snaplen=64) + pcap_record("<", 1, 0, bytes(64)) + pcap_record("<", 2, 0, bytes(1500))
    frames, source = read_all(write(tmp_path, "snap", data))
    assert [len(f.data) for f in frames] == [64, 1500]
    assert source.counters.records_over_snaplen == 1
    assert source.counters.corrupt_records == 0


def test_P3_snaplen_zero_means_unstated(tmp_path: Path) -> None:
    frames, source = read_all(write(tmp_path, "snap0", pcap_file(RECORDS, snaplen=0)))
    assert len(frames) == len(RECORDS)
    assert source.counters.records_over_snaplen == 0


def test_P3_huge_caplen_is_not_allocated_even_under_a_raised_limit(tmp_path: Path) -> None:
    # With the limit raised past the claimed length, the record is simply cut short by EOF:
    # the reader must wait for bytes that never come, not allocate 1.5 GiB for them.
    data = pcap_file(RECORDS[:1]) + pcap_record("<", 5, 0, b"abcd", caplen=1_500_000_000)
    path = write(tmp_path, "p3big", data)
    tracemalloc.start()
    try:
        frames, source = read_all(path, Limits(max_record_bytes=2_000_000_000))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(frames) == 1
    assert source.counters.truncated_records == 1
    assert peak < 4 * READ_CHUNK


# --- P5: hostile timestamps ----------------------------------------------------------------------


def test_P5_timestamps_are_read_faithfully(tmp_path: Path) -> None:
    records = [
        (1_700_000_100, 0, b"a"),
        (1_700_000_000, 0, b"b"),  # backwards
        (0, 0, b"c"),  # all zero
        (0xFFFFFFFF, 999_999, b"d"),  # year 2106
        (1_700_000_000, 3_000_000, b"e"),  # microseconds field out of range
    ]
    frames, source = read_all(write(tmp_path, "p5", pcap_file(records)))
    expected = [1_700_000_100.0, 1_700_000_000.0, 0.0, 4294967295.999999, 1_700_000_003.0]
    assert [f.ts for f in frames] == expected
    assert source.warnings == []


def test_file_source_reads_from_any_byte_stream() -> None:
    source = FileSource("mem", io.BytesIO(pcap_file(RECORDS)))
    assert [f.data for f in source.frames()] == [r[2] for r in RECORDS]
