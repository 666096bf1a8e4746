"""HOSTILE_INPUTS A5-A9, A13-A15 against the in-process app (A1-A4, A10-A12 live beside the features they
attack: test_api_auth.py, test_api_pki.py; A16 needs the real server: tests/e2e/test_serve_api.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from zw_api_env import ApiEnv

TOKENS = "/api/v1/tokens"


def test_A5_unknown_fields_refused(env: ApiEnv) -> None:
    r = env.client.post(
        TOKENS,
        headers=env.auth("admin"),
        json={"role": "viewer", "name": "x", "trusted": True, "created_by": "someone-else"},
    )
    assert r.status_code == 422
    locs = {tuple(d["loc"]) for d in r.json()["error"]["details"]}
    assert ("body", "trusted") in locs and ("body", "created_by") in locs
    r = env.client.post(
        "/api/v1/pki/certificates/1a/revoke",
        headers=env.auth("pki-admin"),
        json={"reason": "superseded", "role": "admin"},
    )
    assert r.status_code == 422


def test_A5_unknown_query_parameters_refused(env: ApiEnv) -> None:
    r = env.client.get(TOKENS, headers=env.auth("admin"), params={"regex": "(a+)+$"})
    assert r.status_code == 422


def test_A6_body_over_the_cap_is_413_by_content_length(env: ApiEnv) -> None:
    body = b'{"role": "viewer", "name": "' + b"x" * (10 << 20) + b'"}'
    r = env.client.post(
        TOKENS, headers={**env.auth("admin"), "Content-Type": "application/json"}, content=body
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "body_too_large"


def test_A6_streamed_body_without_length_is_cut_at_the_cap(env: ApiEnv) -> None:
    sent = 0

    def chunks() -> Iterator[bytes]:
        nonlocal sent
        yield b'{"name": "'
        for _ in range(100):  # up to 100 MB if nobody stopped reading
            sent += 1 << 20
            yield b"x" * (1 << 20)
        yield b'"}'

    r = env.client.post(
        TOKENS, headers={**env.auth("admin"), "Content-Type": "application/json"}, content=chunks()
    )
    assert r.status_code == 413


def test_A6_multipart_is_not_accepted(env: ApiEnv) -> None:
    files = {f"f{i}": (None, "x") for i in range(10_000)}
    r = env.client.post(TOKENS, headers=env.auth("admin"), files=files)
    assert r.status_code in (413, 415)


def test_A7_deep_nesting_is_400_not_500(env: ApiEnv) -> None:
    depth = 100_000
    body = b"[" * depth + b"]" * depth
    r = env.client.post(
        TOKENS, headers={**env.auth("admin"), "Content-Type": "application/json"}, content=body
    )
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["code"] in ("body_unparseable", "invalid_request")


def test_A7_huge_integers_are_refused_not_500(env: ApiEnv) -> None:
    for digits in (5_000, 100_000):
        body = b'{"role": "viewer", "name": ' + b"9" * digits + b"}"
        r = env.client.post(
            TOKENS, headers={**env.auth("admin"), "Content-Type": "application/json"}, content=body
        )
        assert r.status_code in (400, 422), (digits, r.status_code)
    million = b'{"role": "viewer", "name": ' + b"9" * 1_000_000 + b"}"  # 10^6 digits: under the cap
    r = env.client.post(
        TOKENS, headers={**env.auth("admin"), "Content-Type": "application/json"}, content=million
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "body_unparseable"
    r = env.client.get(TOKENS, headers=env.auth("admin"), params={"limit": "9" * 5000})
    assert r.status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "1000000000"},
        {"offset": "-1"},
        {"limit": "0"},
        {"limit": "1000000000", "offset": "-1"},
        {"limit": "ten"},
        {"offset": str(2**63)},
    ],
)
def test_A8_pagination_out_of_range_is_422(env: ApiEnv, params: dict[str, str]) -> None:
    for path in (TOKENS, "/api/v1/audit", "/api/v1/pki/certificates"):
        r = env.client.get(
            path, headers=env.auth("admin" if path != "/api/v1/pki/certificates" else "viewer"), params=params
        )
        assert r.status_code == 422, (path, params)


def test_A8_limit_1000_is_the_maximum_page(env: ApiEnv) -> None:
    r = env.client.get(TOKENS, headers=env.auth("admin"), params={"limit": "1000"})
    assert r.status_code == 200 and r.json()["limit"] == 1000


def test_A9_filters_are_literal_text_never_patterns(env: ApiEnv) -> None:
    evil = "(a+)+$" + "a" * 50 + "!"
    start = time.monotonic()
    r = env.client.get("/api/v1/pki/certificates", headers=env.auth("viewer"), params={"q": evil})
    assert r.status_code == 200 and r.json()["total"] == 0
    r = env.client.get("/api/v1/audit", headers=env.auth("auditor"), params={"who": "%", "what": "_"})
    assert r.status_code == 200 and r.json()["total"] == 0  # LIKE wildcards mean nothing
    assert time.monotonic() - start < 5  # generous: the point is it does not hang


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/pki/certificates/%2e%2e%2f%2e%2e%2fca%2fca.key",
        "/api/v1/pki/certificates/..%2F..%2Fca%2Fca.key",
        "/api/v1/pki/certificates/%2e%2e/%2e%2e/ca/ca.key",
        "/api/v1/pki/certificates/..%5c..%5cca.key",
        "/api/v1/pki/certificates/ca.key%00",
    ],
)
def test_A13_path_traversal_is_400(env: ApiEnv, path: str) -> None:
    import httpx2 as httpx

    url = httpx.URL("http://testserver" + path)
    # Send the path exactly as written: clients normally resolve dot segments before sending.
    raw = path.encode()
    request = env.client.build_request("GET", url, headers=env.auth("pki-admin"))
    request.url = url.copy_with(raw_path=raw)
    r = env.client.send(request)
    assert r.status_code == 400, (path, r.status_code, r.text)
    assert b"BEGIN" not in r.content


def test_A14_no_route_takes_a_url(env: ApiEnv) -> None:
    """No sink, webhook or fetch target is configurable through the API, so there is nothing to point
    at 169.254.169.254 or file:///; this fails the day someone adds one without an allowlist."""
    doc = env.client.get("/api/v1/openapi.json", headers=env.auth("viewer")).json()
    for name, schema in doc["components"]["schemas"].items():
        for field, spec in schema.get("properties", {}).items():
            assert "url" not in field.lower() and spec.get("format") != "uri", (name, field)


def test_A15_wrong_content_type_is_415(env: ApiEnv) -> None:
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        r = env.client.post(
            TOKENS,
            headers={**env.auth("admin"), "Content-Type": ctype},
            content=b'{"role": "viewer", "name": "x"}',
        )
        assert r.status_code == 415, ctype
    r = env.client.post(TOKENS, headers=env.auth("admin"), content=b'{"role": "viewer", "name": "x"}')
    assert r.status_code == 415  # a body with no Content-Type at all
    r = env.client.post(
        TOKENS,
        headers={**env.auth("admin"), "Content-Type": "application/json; charset=utf-8"},
        content=b'{"role": "viewer", "name": "x"}',
    )
    assert r.status_code == 201


def test_A15_unsupported_method_is_405(env: ApiEnv) -> None:
    for method, path in (
        ("PUT", TOKENS),
        ("DELETE", "/api/v1/status"),
        ("PATCH", "/health"),
        ("POST", "/api/v1/pki/ca"),
    ):
        r = env.client.request(method, path, headers=env.auth("admin"))
        assert r.status_code == 405, (method, path)
        assert "allow" in r.headers


def test_A15_missing_required_body_is_422(env: ApiEnv) -> None:
    r = env.client.post(TOKENS, headers=env.auth("admin"))
    assert r.status_code == 422


def test_errors_never_echo_input(env: ApiEnv) -> None:
    marker = "MARKER" * 100
    r = env.client.post(TOKENS, headers=env.auth("admin"), json={"role": marker, "name": "x"})
    assert r.status_code == 422 and "MARKER" not in r.text
