"""pcapng reading: sections, interfaces, timestamp resolution, block kinds, and hostile input P2/P4."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest
from capture_builders import (
    ETH_TCP_502,
    assert_one_line,
    block,
    boundaries,
    epb,
    frame_bytes,
    idb,
    obsolete_pb,
    option,
    read_all,
    read_until_error,
    shb,
    spb,
    write,
)

from sensor.capture.file import READ_CHUNK, open_capture
from sensor.errors import CaptureError
from sensor.limits import DEFAULT_LIMITS, Limits

TS_US = 1_700_000_000_123_456  # microseconds since the epoch


def simple_file(order: str = "<") -> bytes:
    return (
        shb(order)
        + idb(order, 1)
        + epb(order, 0, TS_US, ETH_TCP_502)
        + epb(order, 0, TS_US + 1, frame_bytes(1, 3))
        + epb(order, 0, TS_US + 2_000_000, b"")
    )


@pytest.mark.parametrize("order", ["<", ">"])
def test_pcapng_both_byte_orders(tmp_path: Path, order: str) -> None:
    frames, source = read_all(write(tmp_path, "a.pcapng", simple_file(order)))
    assert [f.data for f in frames] == [ETH_TCP_502, frame_bytes(1, 3), b""]
    assert [f.ts for f in frames] == [TS_US / 1e6, (TS_US + 1) / 1e6, (TS_US + 2_000_000) / 1e6]
    assert {(f.linktype, f.interface) for f in frames} == {(1, 0)}
    assert source.counters.packets == 3
    assert source.counters.bytes == len(ETH_TCP_502) + 3
    assert source.warnings == []


def test_pcapng_two_interfaces_with_different_linktype_and_tsresol(tmp_path: Path) -> None:
    ns = 1_700_000_000_123_456_789
    data = (
        shb()
        + idb("<", 1, 65535, tsresol=9)  # nanoseconds
        + idb("<", 101, 0, tsresol=0x80 | 20)  # 2^-20 s
        + epb("<", 0, ns, b"eth")
        + epb("<", 1, 1_700_000_000 * 2**20 + 2**19, b"raw-ip")
        + epb("<", 0, ns + 1000, b"eth2")
    )
    frames, _ = read_all(write(tmp_path, "two", data))
    assert [(f.linktype, f.interface, f.data) for f in frames] == [
        (1, 0, b"eth"),
        (101, 1, b"raw-ip"),
        (1, 0, b"eth2"),
    ]
    assert frames[0].ts == pytest.approx(1_700_000_000.123456789, abs=1e-6)
    assert frames[1].ts == 1_700_000_000.5
    # A float of seconds since 1970 resolves about 0.24 us, so 1 us apart is 1 us +- one step.
    assert frames[2].ts - frames[0].ts == pytest.approx(1e-6, abs=3e-7)


def test_pcapng_tsoffset_and_millisecond_resolution(tmp_path: Path) -> None:
    data = shb() + idb("<", 1, tsresol=3, tsoffset=1_000_000_000) + epb("<", 0, 700_000_000_250, b"x")
    [frame], _ = read_all(write(tmp_path, "off", data))
    assert frame.ts == 1_700_000_000.25


def test_pcapng_simple_packet_block_uses_interface_zero_and_snaplen(tmp_path: Path) -> None:
    data = shb() + idb("<", 113, snaplen=64) + spb("<", bytes(range(64)), wire_len=1000) + spb("<", b"abc")
    frames, _ = read_all(write(tmp_path, "spb", data))
    assert [(f.linktype, f.data, f.wire_len, f.ts) for f in frames] == [
        (113, bytes(range(64)), 1000, 0.0),
        (113, b"abc", 3, 0.0),
    ]


def test_pcapng_obsolete_packet_block(tmp_path: Path) -> None:
    data = shb() + idb("<", 1) + obsolete_pb("<", 0, TS_US, ETH_TCP_502)
    [frame], _ = read_all(write(tmp_path, "pb", data))
    assert frame.data == ETH_TCP_502
    assert frame.ts == TS_US / 1e6


def test_pcapng_skips_nrb_isb_dsb_custom_and_unknown_blocks(tmp_path: Path) -> None:
    skipped = [
        block("<", 4, struct.pack("<HH", 1, 8) + bytes([127, 0, 0, 1]) + b"plc\0" + bytes(4)),  # NRB
        block("<", 5, struct.pack("<III", 0, 1, 2)),  # ISB
        block("<", 0x0000000A, struct.pack("<II", 0x544C534B, 5) + b"keys!"),  # DSB
        block("<", 0x00000BAD, struct.pack("<I", 32473) + b"custom"),  # custom
        block("<", 0x7FFF1234, b"future block type"),  # unknown
    ]
    data = shb() + idb("<", 1) + skipped[0] + epb("<", 0, TS_US, b"a") + b"".join(skipped[1:])
    data += epb("<", 0, TS_US, b"b", options=option("<", 2, struct.pack("<I", 1)) + bytes(4))
    frames, source = read_all(write(tmp_path, "skip", data))
    assert [f.data for f in frames] == [b"a", b"b"]
    assert source.warnings == []


def test_pcapng_multiple_sections_change_byte_order_and_interfaces(tmp_path: Path) -> None:
    data = (
        shb("<")
        + idb("<", 1)
        + epb("<", 0, TS_US, b"first")
        + shb(">")
        + idb(">", 276, tsresol=9)
        + epb(">", 0, TS_US * 1000, b"second")
        + shb("<")
        + idb("<", 0)
        + idb("<", 228)
        + epb("<", 1, TS_US, b"third")
    )
    frames, _ = read_all(write(tmp_path, "sections", data))
    assert [(f.data, f.linktype, f.interface) for f in frames] == [
        (b"first", 1, 0),
        (b"second", 276, 1),
        (b"third", 228, 3),
    ]
    assert frames[1].ts == pytest.approx(TS_US / 1e6, abs=1e-6)


def test_pcapng_interfaces_are_per_section(tmp_path: Path) -> None:
    # Interface 1 of the first section does not exist in the second one.
    data = shb() + idb() + idb() + epb("<", 1, 1, b"a") + shb() + idb() + epb("<", 1, 1, b"b")
    frames, error, _ = read_until_error(write(tmp_path, "persection", data))
    assert [f.data for f in frames] == [b"a"]
    assert error is not None
    assert "undeclared interface 1" in str(error)


def test_pcapng_many_blocks_across_read_chunks(tmp_path: Path) -> None:
    count = READ_CHUNK * 5 // 2 // 100
    body = b"".join(epb("<", 0, TS_US + i, frame_bytes(i, 61)) for i in range(count))
    frames, source = read_all(write(tmp_path, "big", shb() + idb() + body))
    assert len(frames) == count
    assert all(f.data[-4:] == i.to_bytes(4, "big") for i, f in enumerate(frames))
    assert source.counters.packets == count
    assert source.counters.bytes == 61 * count


def test_pcapng_huge_skipped_block_is_streamed_past(tmp_path: Path) -> None:
    limits = Limits(max_record_bytes=1024)
    huge = block("<", 0x0000000A, bytes(3 * READ_CHUNK))
    data = shb() + idb() + epb("<", 0, 1, b"a") + huge + epb("<", 0, 2, b"b")
    frames, source = read_all(write(tmp_path, "dsb", data), limits)
    assert [f.data for f in frames] == [b"a", b"b"]
    # Cut inside it: a truncation, not an error.
    frames, source = read_all(write(tmp_path, "dsbcut", data[: len(data) - 2000]), limits)
    assert [f.data for f in frames] == [b"a"]
    assert source.counters.truncated_records == 1
    # Its trailing length copy still has to match.
    bad = bytearray(data)
    trailer = len(shb() + idb() + epb("<", 0, 1, b"a") + huge) - 4
    bad[trailer : trailer + 4] = struct.pack("<I", 12)
    frames, error, _ = read_until_error(write(tmp_path, "dsbbad", bytes(bad)), limits)
    assert [f.data for f in frames] == [b"a"]
    assert error is not None
    assert "trailing block length" in str(error)


def test_pcapng_gzip(tmp_path: Path) -> None:
    plain, _ = read_all(write(tmp_path, "a.pcapng", simple_file(">")))
    packed, _ = read_all(write(tmp_path, "a.gz", gzip.compress(simple_file(">"))))
    assert packed == plain


def test_P1_pcapng_unsupported_linktype_fails_at_open(tmp_path: Path) -> None:
    path = write(tmp_path, "usb", shb() + idb("<", 189) + epb("<", 0, 1, b"a"))
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    assert_one_line(info.value, path, "unsupported link type 189")


def test_P1_pcapng_later_unsupported_interface_fails_when_reached(tmp_path: Path) -> None:
    data = shb() + idb() + epb("<", 0, 1, b"a") + idb("<", 147) + epb("<", 1, 1, b"b")
    path = write(tmp_path, "later", data)
    frames, error, _ = read_until_error(path)
    assert [f.data for f in frames] == [b"a"]
    assert error is not None
    assert_one_line(error, path, "unsupported link type 147")


def test_P1_pcapng_bad_byte_order_magic_at_start(tmp_path: Path) -> None:
    data = bytearray(simple_file())
    data[8:12] = b"\x11\x22\x33\x44"
    path = write(tmp_path, "bom", bytes(data))
    with pytest.raises(CaptureError) as info:
        open_capture(path)
    assert_one_line(info.value, path, "corrupt record at offset 0", "byte-order magic")


# --- P2: truncated at every byte offset ----------------------------------------------------------


@pytest.mark.parametrize("order", ["<", ">"])
def test_P2_pcapng_truncated_at_every_byte_offset(tmp_path: Path, order: str) -> None:
    blocks = [
        shb(order),
        idb(order, 1, tsresol=6),
        epb(order, 0, TS_US, ETH_TCP_502),
        block(order, 5, bytes(8)),
        epb(order, 0, TS_US + 1, b"x"),
        spb(order, b"simple"),
    ]
    payloads = [ETH_TCP_502, b"x", b"simple"]
    packet_ends = boundaries(blocks)[2:]
    packet_ends = [packet_ends[0], packet_ends[2], packet_ends[3]]
    data = b"".join(blocks)
    ends = boundaries(blocks)
    path = tmp_path / "cut.pcapng"
    for cut in range(len(data) + 1):
        path.write_bytes(data[:cut])
        if cut < len(blocks[0]):
            with pytest.raises(CaptureError) as info:
                open_capture(path)
            assert_one_line(info.value, path, "file too short")
            continue
        frames, source = read_all(path)
        complete = sum(1 for end in packet_ends if end <= cut)
        assert [f.data for f in frames] == payloads[:complete], cut
        at_boundary = cut in ends
        assert source.counters.truncated_records == (0 if at_boundary else 1), cut
        assert bool(source.warnings) == (not at_boundary)
        assert source.counters.corrupt_records == 0


# --- P4: impossible block lengths ----------------------------------------------------------------


def _corrupt_after_one_frame(
    tmp_path: Path, tail: bytes, *fragments: str, limits: Limits = DEFAULT_LIMITS
) -> None:
    head = shb() + idb() + epb("<", 0, TS_US, b"good")
    path = write(tmp_path, "p4", head + tail + epb("<", 0, TS_US, b"never"))
    frames, error, source = read_until_error(path, limits)
    assert [f.data for f in frames] == [b"good"]
    assert error is not None
    assert_one_line(error, path, f"corrupt record at offset {len(head)}", *fragments)
    assert source is not None
    assert source.counters.corrupt_records == 1


@pytest.mark.parametrize("length", [0, 4, 8])
def test_P4_block_total_length_below_12(tmp_path: Path, length: int) -> None:
    _corrupt_after_one_frame(tmp_path, struct.pack("<II", 6, length) + bytes(32), f"block length {length}")


@pytest.mark.parametrize("length", [33, 34, 35, 45])
def test_P4_block_total_length_not_multiple_of_4(tmp_path: Path, length: int) -> None:
    _corrupt_after_one_frame(tmp_path, struct.pack("<II", 6, length) + bytes(48), f"block length {length}")


@pytest.mark.parametrize("length", [0xFFFFFFFC, 0x7FFFFFF0, 256 * 1024 + 64 * 1024 + 4])
def test_P4_packet_block_length_past_eof_and_over_limit(tmp_path: Path, length: int) -> None:
    _corrupt_after_one_frame(tmp_path, struct.pack("<II", 6, length) + bytes(64), "exceeds the limit")


def test_P4_block_within_limit_past_eof_is_a_truncated_last_record(tmp_path: Path) -> None:
    data = shb() + idb() + epb("<", 0, TS_US, b"good") + struct.pack("<IIIIIII", 6, 4000, 0, 0, 0, 3000, 3000)
    frames, source = read_all(write(tmp_path, "p4eof", data))
    assert [f.data for f in frames] == [b"good"]
    assert source.counters.truncated_records == 1


def test_P4_trailing_length_copy_mismatch(tmp_path: Path) -> None:
    bad = bytearray(epb("<", 0, 1, b"abcd"))
    bad[-4:] = struct.pack("<I", len(bad) + 4)
    _corrupt_after_one_frame(tmp_path, bytes(bad), "trailing block length")


def test_P4_captured_length_larger_than_its_block(tmp_path: Path) -> None:
    bad = bytearray(epb("<", 0, 1, b"abcd"))
    bad[20:24] = struct.pack("<I", 200)
    _corrupt_after_one_frame(tmp_path, bytes(bad), "exceeds its block")


def test_P4_captured_length_over_limit(tmp_path: Path) -> None:
    tail = epb("<", 0, 1, bytes(200))
    _corrupt_after_one_frame(tmp_path, tail, "exceeds the limit 100", limits=Limits(max_record_bytes=100))


def test_P4_packet_for_undeclared_interface(tmp_path: Path) -> None:
    _corrupt_after_one_frame(tmp_path, epb("<", 7, 1, b"abcd"), "undeclared interface 7")


def test_P4_second_section_with_bad_byte_order_magic(tmp_path: Path) -> None:
    bad = bytearray(shb())
    bad[8:12] = b"\x00\x00\x00\x00"
    _corrupt_after_one_frame(tmp_path, bytes(bad), "byte-order magic")


def test_P4_section_of_unknown_major_version(tmp_path: Path) -> None:
    _corrupt_after_one_frame(tmp_path, shb(major=2), "major version 2")


def test_P4_packet_blocks_too_short_for_their_fields(tmp_path: Path) -> None:
    _corrupt_after_one_frame(tmp_path, block("<", 6, bytes(12)), "packet block of 24 bytes")
    _corrupt_after_one_frame(tmp_path, block("<", 1, b""), "interface description block of 12 bytes")


def test_P4_simple_packet_block_before_any_interface(tmp_path: Path) -> None:
    path = write(tmp_path, "spb", shb() + spb("<", b"abc"))
    frames, error, _ = read_until_error(path)
    assert frames == []
    assert error is not None
    assert "before any interface" in str(error)


def test_pcapng_option_running_past_its_block_is_a_warning(tmp_path: Path) -> None:
    broken_idb = block("<", 1, struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 200) + bytes(4))
    frames, source = read_all(write(tmp_path, "opt", shb() + broken_idb + epb("<", 0, TS_US, b"a")))
    assert [f.ts for f in frames] == [TS_US / 1e6]
    assert any("option 9 runs past" in w for w in source.warnings)


def test_P5_pcapng_extreme_timestamps_are_read_faithfully(tmp_path: Path) -> None:
    data = (
        shb()
        + idb("<", 1, tsresol=0)  # whole seconds
        + epb("<", 0, 0xFFFFFFFF, b"2106")
        + epb("<", 0, 0, b"zero")
        + epb("<", 0, 0xFFFFFFFFFFFFFFFF, b"max")
        + idb("<", 1, tsresol=0x80 | 127, tsoffset=-5)  # 2^-127 s and a negative offset
        + epb("<", 1, 1, b"tiny")
    )
    frames, _ = read_all(write(tmp_path, "p5", data))
    assert [f.ts for f in frames] == [4294967295.0, 0.0, float(2**64 - 1), -5.0 + 2**-127]
