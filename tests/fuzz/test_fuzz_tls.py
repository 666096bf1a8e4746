"""Property tests for the TLS dissector: parsers raise only ParseError, sessions never raise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sensor.dissectors.base import Reader
from sensor.dissectors.tls import TlsDissector, TlsSession
from sensor.dissectors.tls.frames import parse_certificate_list, parse_client_hello, parse_server_hello
from sensor.errors import ParseError
from sensor.limits import Limits
from sensor.records import FlowRef

FLOW = FlowRef(1, "1:fuzz", "tcp", "10.0.0.1", 40000, "10.0.0.2", 443)
LIMITS = Limits(tls_max_handshake=4096, tls_max_certificates=4)


def _record(ctype: int, payload: bytes) -> bytes:
    return bytes([ctype, 3, 3]) + len(payload).to_bytes(2, "big") + payload


record = st.builds(_record, st.sampled_from([20, 21, 22, 23, 24]), st.binary(max_size=300))
handshake_record = st.builds(
    lambda t, body: _record(22, bytes([t]) + len(body).to_bytes(3, "big") + body),
    st.sampled_from([1, 2, 11, 13, 14]),
    st.binary(max_size=300),
)
chunk = st.one_of(st.binary(max_size=200), record, handshake_record)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_hello_and_certificate_parsers_raise_only_parse_errors(body: bytes) -> None:
    for parse in (parse_client_hello, parse_server_hello, lambda r: parse_certificate_list(r, 4)):
        try:
            parse(Reader(body))
        except ParseError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), chunk), max_size=20))
def test_session_never_raises_and_stays_bounded(chunks: list[tuple[bool, bytes]]) -> None:
    s = TlsSession(FLOW, LIMITS)
    for to_server, data in chunks:
        for e in s.feed(data, to_server, 1.0):
            e.eve_body()
            assert getattr(e, "kind", "") != "tls.internal_error"
    s.close(2.0)
    for d in (s._to_server, s._to_client):
        assert len(d.buf) <= 5 + 18432 + 200
        assert len(d.hs_buf) <= LIMITS.tls_max_handshake + 4 + 18432


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=32), st.booleans())
def test_probe_never_raises(data: bytes, to_server: bool) -> None:
    TlsDissector().probe(data, to_server)
