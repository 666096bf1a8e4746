"""Built-in type decoding (OPC 10000-6 §5.2.2) with the specification's worked examples."""

from __future__ import annotations

import struct

import pytest
from asyncua import ua
from asyncua.ua.ua_binary import variant_to_binary

from sensor.dissectors.base import Reader
from sensor.dissectors.opcua.encoding import Decoder, ticks_to_iso
from sensor.errors import Malformed, Truncated


def dec(data: bytes, **kw: int) -> Decoder:
    return Decoder(Reader(data), **kw)


def test_string_worked_example() -> None:
    # §5.2.2.4: the String "水Boy" is 06 00 00 00 E6 B0 B4 42 6F 79
    d = dec(bytes.fromhex("06000000E6B0B4426F79"))
    assert d.string() == "水Boy"
    assert d.r.remaining == 0


def test_string_null_and_empty_differ() -> None:
    d = dec(struct.pack("<ii", -1, 0))
    assert d.string() is None
    assert d.string() == ""


def test_guid_worked_example() -> None:
    # §5.2.2.7: {72962B91-FA75-4AE6-8D28-B404DC7DAF63}
    d = dec(bytes.fromhex("912B967275FAE64A8D28B404DC7DAF63"))
    assert d.guid() == "72962b91-fa75-4ae6-8d28-b404dc7daf63"


@pytest.mark.parametrize(
    ("hexdata", "text"),
    [
        ("0072", "i=114"),  # §5.2.2.9 two-byte example
        ("01050104", "ns=5;i=1025"),  # four-byte example
        ("03010006000000486F74E6B0B4", "ns=1;s=Hot水"),  # string example
        ("020200 15CD5B07".replace(" ", ""), "ns=2;i=123456789"),
    ],
)
def test_nodeid_worked_examples(hexdata: str, text: str) -> None:
    d = dec(bytes.fromhex(hexdata))
    assert d.nodeid() == text
    assert d.r.remaining == 0


def test_nodeid_guid_and_opaque_forms() -> None:
    g = bytes.fromhex("912B967275FAE64A8D28B404DC7DAF63")
    assert dec(b"\x04\x01\x00" + g).nodeid() == "ns=1;g=72962b91-fa75-4ae6-8d28-b404dc7daf63"
    assert dec(b"\x05\x00\x00" + struct.pack("<i", 2) + b"\x01\x02").nodeid() == "b=AQI="


def test_nodeid_bad_encoding() -> None:
    with pytest.raises(Malformed) as exc:
        dec(b"\x07\x00").nodeid()
    assert exc.value.reason == "bad_nodeid"


def test_expanded_nodeid_with_uri_and_server_index() -> None:
    data = b"\xc1\x02\x05\x00" + struct.pack("<i", 8) + b"urn:test" + struct.pack("<I", 3)
    assert dec(data).expanded_nodeid() == "svr=3;nsu=urn:test;i=5"


def test_localized_text_and_qualified_name() -> None:
    lt = b"\x03" + struct.pack("<i", 2) + b"en" + struct.pack("<i", 5) + b"Hello"
    assert dec(lt).localized_text() == "Hello"
    assert dec(b"\x00").localized_text() is None
    assert dec(b"\x02\x00" + struct.pack("<i", 3) + b"Foo").qualified_name() == "2:Foo"


def test_datetime_epoch_and_null() -> None:
    # 1970-01-01 is 116444736000000000 ticks after 1601-01-01
    assert ticks_to_iso(116444736000000000) == "1970-01-01T00:00:00+00:00"
    assert ticks_to_iso(0) is None


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (ua.Variant(True, ua.VariantType.Boolean), {"type": "Boolean", "value": True}),
        (ua.Variant(-5, ua.VariantType.Int32), {"type": "Int32", "value": -5}),
        (ua.Variant(2.5, ua.VariantType.Double), {"type": "Double", "value": 2.5}),
        (ua.Variant("x", ua.VariantType.String), {"type": "String", "value": "x"}),
        (ua.Variant(b"\x01\xff", ua.VariantType.ByteString), {"type": "ByteString", "value": "01ff"}),
        (ua.Variant(ua.NodeId(85, 0), ua.VariantType.NodeId), {"type": "NodeId", "value": "i=85"}),
        (
            ua.Variant([1, 2, 3], ua.VariantType.UInt16),
            {"type": "UInt16", "array": [1, 2, 3], "length": 3},
        ),
        (
            ua.Variant(["a", None], ua.VariantType.String),
            {"type": "String", "array": ["a", None], "length": 2},
        ),
    ],
)
def test_variant_from_asyncua(variant: ua.Variant, expected: object) -> None:
    d = dec(variant_to_binary(variant))
    assert d.variant() == expected
    assert d.r.remaining == 0


def test_variant_matrix_dimensions_kept_when_consistent() -> None:
    data = b"\xc6" + struct.pack("<i6i", 6, *range(6)) + struct.pack("<i2i", 2, 2, 3)
    d = dec(data)
    assert d.variant() == {"type": "Int32", "array": [0, 1, 2, 3, 4, 5], "length": 6, "dimensions": [2, 3]}
    assert not d.bad_matrix


def test_variant_array_keeps_max_kept_but_consumes_all() -> None:
    data = b"\x87" + struct.pack("<i", 100) + struct.pack("<100I", *range(100)) + b"\xaa"
    d = dec(data, max_kept=4)
    v = d.variant()
    assert v == {"type": "UInt32", "array": [0, 1, 2, 3], "length": 100}
    assert d.r.remaining == 1


def test_data_value_worked_fields() -> None:
    dv = ua.DataValue(Value=ua.Variant(7, ua.VariantType.Byte), StatusCode=ua.StatusCode(0x80340000))
    from asyncua.ua.ua_binary import struct_to_binary

    d = dec(struct_to_binary(dv))
    out = d.data_value()
    assert out["value"] == {"type": "Byte", "value": 7}
    assert out["status"] == "BadNodeIdUnknown"


def test_diagnostic_info_nested_and_string_table_indices_kept_as_numbers() -> None:
    # outer: symbolic id 5 + inner status + inner diag; inner: localized text index 99 (no table, U10)
    data = b"\x61" + struct.pack("<i", 5) + struct.pack("<I", 0x80340000) + b"\x04" + struct.pack("<i", 99)
    info = dec(data).diagnostic_info()
    assert info == {"symbolic_id": 5, "inner_status": "BadNodeIdUnknown", "inner": {"localized_text": 99}}


def test_extension_object_header_only() -> None:
    data = b"\x01\x00\x41\x01\x01" + struct.pack("<i", 3) + b"abc"
    assert dec(data).extension_object() == {"type": "AnonymousIdentityToken", "bytes": 3}


def test_truncated_read_raises_truncated() -> None:
    with pytest.raises(Truncated):
        dec(b"\x06\x01\x00").variant()


def test_invalid_utf8_replaced_and_flagged() -> None:
    d = dec(struct.pack("<i", 3) + b"a\xffb")
    assert d.string() == "a\ufffdb"
    assert d.bad_utf8


def test_long_string_truncated_to_field_cap() -> None:
    d = dec(struct.pack("<i", 1000) + b"x" * 1000 + b"!", max_chars=16)
    assert d.string() == "x" * 16
    assert d.r.remaining == 1
