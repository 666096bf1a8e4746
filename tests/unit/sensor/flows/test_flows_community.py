"""Community ID v1: published vectors and an independent computation from the spec."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct

import pytest

from sensor.flows.community import community_id


def v4(text: str) -> bytes:
    return socket.inet_aton(text)


def v6(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, text)


def spec_community_id(saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """Straight from the spec text: smaller endpoint first, then sha1 over the packed fields."""
    if (saddr, sport) > (daddr, dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    material = struct.pack("!H", seed) + saddr + daddr + bytes((proto, 0)) + struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(material).digest()).decode()


@pytest.mark.parametrize(
    ("saddr", "daddr", "proto", "sport", "dport", "seed", "expected"),
    [
        # the specification's worked examples (community-id-spec baseline)
        (v4("128.232.110.120"), v4("66.35.250.204"), 6, 34855, 80, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        (v4("66.35.250.204"), v4("128.232.110.120"), 6, 80, 34855, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
        (v4("128.232.110.120"), v4("66.35.250.204"), 6, 34855, 80, 1, "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
        (v4("192.168.1.52"), v4("8.8.8.8"), 17, 54585, 53, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
        # ICMP echo request and its reply share an id
        (v4("192.168.0.89"), v4("192.168.0.1"), 1, 8, 0, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
        (v4("192.168.0.1"), v4("192.168.0.89"), 1, 0, 0, 0, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="),
    ],
)
def test_published_vectors(
    saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int, seed: int, expected: str
) -> None:
    assert community_id(saddr, daddr, proto, sport, dport, seed) == expected


@pytest.mark.parametrize(
    ("saddr", "daddr", "proto", "sport", "dport", "seed"),
    [
        (v4("10.0.0.1"), v4("10.0.0.2"), 6, 40000, 502, 0),
        (v4("10.0.0.2"), v4("10.0.0.1"), 6, 502, 40000, 0),
        (v4("10.0.0.1"), v4("10.0.0.1"), 6, 502, 40000, 0),  # same address: ports decide
        (v6("fd00::1"), v6("fd00::2"), 17, 1883, 51000, 7),
        (v6("2001:db8::ff"), v6("2001:db8::1"), 6, 4840, 50000, 65535),
    ],
)
def test_matches_independent_spec_computation(
    saddr: bytes, daddr: bytes, proto: int, sport: int, dport: int, seed: int
) -> None:
    ours = community_id(saddr, daddr, proto, sport, dport, seed)
    assert ours == spec_community_id(saddr, daddr, proto, sport, dport, seed)
    assert ours == community_id(daddr, saddr, proto, dport, sport, seed)


def test_seed_and_family_change_the_id() -> None:
    base = community_id(v4("10.0.0.1"), v4("10.0.0.2"), 6, 1, 502)
    assert community_id(v4("10.0.0.1"), v4("10.0.0.2"), 6, 1, 502, seed=1) != base
    assert community_id(v4("10.0.0.1"), v4("10.0.0.2"), 17, 1, 502) != base


def test_portless_protocol_hashes_addresses_only() -> None:
    material = struct.pack("!H", 0) + v4("10.0.0.1") + v4("10.0.0.2") + bytes((47, 0))
    expected = "1:" + base64.b64encode(hashlib.sha1(material).digest()).decode()
    assert community_id(v4("10.0.0.2"), v4("10.0.0.1"), 47, 0, 0) == expected
