"""Tokens, the role matrix cell by cell, failed-auth rate limiting and the audit trail."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from fastapi.routing import APIRoute
from zw_api_env import ApiEnv

from api.auth import ROLE_PERMISSIONS, FailedAuthLimiter, Permission, Require, TokenStore
from api.deps import connect
from api.roles import Role
from api.routes import all_routers

# A plausible value for every path parameter name the API uses (ids that do not exist: 404 is fine).
PATH_SAMPLES = {
    "serial": "1a2b3c",
    "token_id": "0123456789ab",
    "label": "tls-client",
    "alert_id": "0" * 16,
    "asset_id": "10.10.1.1",
    "ip": "10.10.1.1",
    "sid": "9000001",
    "rule_id": "1:9000001:1",
    "edge_id": "0" * 16,
}


def guarded_routes(env: ApiEnv) -> list[tuple[APIRoute, str, Permission]]:
    out = []
    for route in (r for router in all_routers() for r in router.routes):
        if not isinstance(route, APIRoute):
            continue
        perms = [d.dependency.permission for d in route.dependencies if isinstance(d.dependency, Require)]
        for method in sorted(route.methods):
            out.append((route, method, perms[0] if perms else None))
    return out  # type: ignore[return-value]


def concrete_path(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PATH_SAMPLES[m.group(1)], path)


def call(env: ApiEnv, method: str, path: str, headers: dict[str, str]) -> int:
    kwargs: dict[str, object] = {"headers": headers}
    if method in ("POST", "PUT", "PATCH"):
        if path.startswith("/.well-known/est/"):
            kwargs["content"] = b"AAAA"
            kwargs["headers"] = {**headers, "Content-Type": "application/pkcs10"}
        else:
            kwargs["json"] = {}
    params = {"wait": "0"} if path.endswith("/stream") else None
    return env.client.request(method, path, params=params, **kwargs).status_code  # type: ignore[arg-type]


def test_every_route_but_health_names_a_permission(env: ApiEnv) -> None:
    unguarded = {r.path for r, _, perm in guarded_routes(env) if perm is None}
    assert unguarded == {"/health", "/api/v1/health"}


def test_A1_no_token_is_401_everywhere_except_health(env: ApiEnv) -> None:
    seen = 0
    for route, method, perm in guarded_routes(env):
        status = call(env, method, concrete_path(route.path), {})
        if perm is None:
            assert status == 200, route.path
        else:
            assert status == 401, (method, route.path, status)
            seen += 1
    assert seen >= 15


def test_role_matrix_cell_by_cell(env: ApiEnv) -> None:
    """Each (route, role): 403 exactly when the role lacks the route's permission."""
    cells = 0
    for route, method, perm in guarded_routes(env):
        if perm is None:
            continue
        path = concrete_path(route.path)
        for role in Role:
            status = call(env, method, path, env.auth(role))
            allowed = perm in ROLE_PERMISSIONS[role]
            if allowed:
                assert status not in (401, 403), (method, route.path, role, status)
            else:
                assert status == 403, (method, route.path, role, status)
            cells += 1
    assert cells >= 15 * len(Role)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("viewer", 403), ("analyst", 403), ("admin", 403), ("auditor", 403), ("pki-admin", 201)],
)
def test_only_pki_admin_issues_certificates(
    env: ApiEnv, csr_pem: Callable[..., str], role: str, expected: int
) -> None:
    r = env.client.post(
        "/api/v1/pki/certificates", headers=env.auth(role), json={"csr": csr_pem(), "profile": "tls-client"}
    )
    assert r.status_code == expected, r.text


def test_A3_viewer_cannot_change_anything(env: ApiEnv) -> None:
    for method, path in [
        ("POST", "/api/v1/pki/certificates"),
        ("POST", "/api/v1/pki/certificates/1a/revoke"),
        ("POST", "/api/v1/tokens"),
        ("DELETE", "/api/v1/tokens/0123456789ab"),
    ]:
        r = env.client.request(method, path, headers=env.auth("viewer"), json={})
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["code"] == "forbidden"


def test_token_shown_once_stored_as_hash_and_usable(env: ApiEnv) -> None:
    r = env.client.post("/api/v1/tokens", headers=env.auth("admin"), json={"role": "analyst", "name": "soc"})
    assert r.status_code == 201
    token = r.json()["token"]
    assert token.startswith("zw_")
    conn = connect(env.settings.db_path)
    try:
        dump = "\n".join(conn.iterdump())
    finally:
        conn.close()
    secret = token.split("_", 2)[2]
    assert secret not in dump and token not in dump
    listed = env.client.get("/api/v1/tokens", headers=env.auth("admin")).json()
    assert all("token" not in item for item in listed["items"])
    assert env.client.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_revoked_token_is_refused(env: ApiEnv) -> None:
    r = env.client.post("/api/v1/tokens", headers=env.auth("admin"), json={"role": "viewer", "name": "temp"})
    body = r.json()
    headers = {"Authorization": f"Bearer {body['token']}"}
    assert env.client.get("/api/v1/status", headers=headers).status_code == 200
    assert env.client.delete(f"/api/v1/tokens/{body['id']}", headers=env.auth("admin")).status_code == 204
    assert env.client.get("/api/v1/status", headers=headers).status_code == 401
    assert env.client.delete(f"/api/v1/tokens/{body['id']}", headers=env.auth("admin")).status_code == 404


def test_A2_token_one_character_off_and_jwt_shapes_are_401(env: ApiEnv) -> None:
    good = env.tokens["admin"]
    last = "A" if good[-1] != "A" else "B"
    candidates = [
        good[:-1] + last,
        good[:-1],
        good + "A",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",  # JWT alg:none
        "zw_0123456789ab_" + "A" * 43,
        "",
    ]
    for token in candidates:
        r = env.client.get("/api/v1/status", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, token
        assert r.json()["error"] == {"code": "unauthenticated", "message": "invalid token"} or token == ""
    r = env.client.get("/api/v1/status", headers={"Authorization": f"Basic {good}"})
    assert r.status_code == 401


def test_A10_failed_logins_rate_limited_with_retry_after_and_audited(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env(auth_failures_allowed=5, auth_failure_window_seconds=60.0)
    bad = {"Authorization": "Bearer zw_0123456789ab_" + "A" * 43}
    statuses = [env.client.get("/api/v1/status", headers=bad).status_code for _ in range(8)]
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429] * 3
    r = env.client.get("/api/v1/status", headers=env.auth("admin"))  # even a good token waits
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    rows = env.audit_rows()
    assert sum(1 for row in rows if row[1] == "auth.failed") == 5
    assert sum(1 for row in rows if row[1] == "auth.locked_out") == 1


def test_limiter_window_expires_and_stays_bounded() -> None:
    now = [1000.0]
    limiter = FailedAuthLimiter(allowed=3, window=10.0, max_clients=100, clock=lambda: now[0])
    for _ in range(3):
        limiter.record_failure("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 10
    now[0] += 4
    assert limiter.retry_after("10.0.0.1") == 6
    now[0] += 6.5
    assert limiter.retry_after("10.0.0.1") is None
    for i in range(1000):
        limiter.record_failure(f"10.1.{i // 256}.{i % 256}")
    assert len(limiter._failures) <= 100


def test_missing_token_does_not_count_as_failed_login(make_env: Callable[..., ApiEnv]) -> None:
    env = make_env(auth_failures_allowed=2)
    for _ in range(5):
        assert env.client.get("/api/v1/status").status_code == 401
    assert env.client.get("/api/v1/status", headers=env.auth("viewer")).status_code == 200


def test_state_changes_are_audited_including_refusals(env: ApiEnv) -> None:
    env.client.post("/api/v1/tokens", headers=env.auth("admin"), json={"role": "viewer", "name": "a"})
    env.client.post("/api/v1/tokens", headers=env.auth("viewer"), json={"role": "admin", "name": "b"})
    rows = env.audit_rows()
    assert any(r[1] == "tokens.create" and r[3].startswith("ok 201") for r in rows)
    assert any(r[0].endswith(":viewer") and r[3] == "refused 403" for r in rows)
    r = env.client.get("/api/v1/audit", headers=env.auth("auditor"), params={"what": "tokens."})
    assert r.status_code == 200 and r.json()["total"] == 1
    verify = env.client.get("/api/v1/audit/verify", headers=env.auth("auditor")).json()
    assert verify["intact"] is True and verify["records"] == len(rows)


def test_token_store_verify_is_exact(tmp_path: object) -> None:
    from pathlib import Path

    conn = connect(Path(str(tmp_path)) / "t.db")
    TokenStore.create_schema(conn)
    store = TokenStore(conn)
    record, token = store.create(Role.VIEWER, "x", "me")
    assert store.verify(token) == record
    assert store.verify(token.upper()) is None
    assert store.verify(token.replace(record.id, "f" * 12)) is None
    conn.close()
