"""PATCH /api/v1/assets/{ip}: names and tags people give assets (roles, validation, A5, audit, filters)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from zw_api_env import ApiEnv
from zw_paths import PCAPS

from sensor.assets.labels import MAX_NAME_CHARS, MAX_TAG_CHARS, MAX_TAGS_PER_ASSET
from sensor.runtime import SensorConfig, replay

URL = "/api/v1/assets/127.0.0.1"


@pytest.fixture
def filled(make_env: Callable[..., ApiEnv], tmp_path: Path) -> ApiEnv:
    db = tmp_path / "zonewarden.db"
    replay([PCAPS / "modbus-pymodbus-device-id.pcap"], SensorConfig(db_path=db))
    return make_env(db_path=db)


@pytest.mark.parametrize(
    ("role", "expected"),
    [("viewer", 403), ("auditor", 403), ("pki-admin", 403), ("analyst", 200), ("admin", 200)],
)
def test_patch_labels_needs_analyst_or_admin(filled: ApiEnv, role: str, expected: int) -> None:
    r = filled.client.patch(URL, headers=filled.auth(role), json={"tags": ["plc"]})
    assert r.status_code == expected, r.text


def test_patch_labels_sets_name_and_tags_shown_in_detail_and_list(filled: ApiEnv) -> None:
    h = filled.auth("analyst")
    r = filled.client.patch(URL, headers=h, json={"name": "Filler PLC", "tags": ["line1", "plc", "line1"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "Filler PLC" and body["given_name"] == "Filler PLC"
    assert body["tags"] == ["line1", "plc"] and body["labels_updated_by"]
    assert body["inferred_name"] and "modbus_server" in body["roles"]
    detail = filled.client.get(URL, headers=filled.auth("viewer")).json()
    assert detail["tags"] == ["line1", "plc"] and detail["name"] == "Filler PLC"
    page = filled.client.get("/api/v1/assets", headers=h, params={"tag": "line1"}).json()
    assert page["total"] == 1 and page["items"][0]["tags"] == ["line1", "plc"]
    assert filled.client.get("/api/v1/assets", headers=h, params={"tag": "line2"}).json()["total"] == 0
    assert filled.client.get("/api/v1/assets", headers=h, params={"q": "filler"}).json()["total"] == 1
    assert filled.client.get("/api/v1/assets", headers=h, params={"q": "plc"}).json()["total"] == 1


def test_patch_labels_partial_updates_and_clearing(filled: ApiEnv) -> None:
    h = filled.auth("admin")
    filled.client.patch(URL, headers=h, json={"name": "P", "tags": ["a", "b"]})
    assert filled.client.patch(URL, headers=h, json={"tags": ["c"]}).json()["given_name"] == "P"
    body = filled.client.patch(URL, headers=h, json={"name": ""}).json()
    assert body["given_name"] == "" and body["tags"] == ["c"] and body["name"] == body["inferred_name"]
    body = filled.client.patch(URL, headers=h, json={"tags": []}).json()
    assert body["tags"] == [] and body["labels_updated_by"] is None


def test_A5_patch_asset_with_extra_fields_is_422_and_changes_nothing(filled: ApiEnv) -> None:
    h = filled.auth("admin")
    for extra in ({"trusted": True}, {"role": "admin"}, {"created_by": "mallory"}, {"roles": ["x"]}):
        r = filled.client.patch(URL, headers=h, json={"tags": ["owned"], **extra})
        assert r.status_code == 422, (extra, r.text)
    assert filled.client.get(URL, headers=h).json()["tags"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"tags": ["two words"]},
        {"tags": ["-lead"]},
        {"tags": [""]},
        {"tags": ["x" * (MAX_TAG_CHARS + 1)]},
        {"tags": [f"t{i}" for i in range(MAX_TAGS_PER_ASSET + 1)]},
        {"tags": "plc"},
        {"tags": [1]},
        {"name": "x" * (MAX_NAME_CHARS + 1)},
        {"name": "line\nbreak"},
        {"name": "\u202eevil"},
        {"name": 5},
    ],
)
def test_patch_labels_refuses_bad_values_with_422(filled: ApiEnv, body: dict[str, object]) -> None:
    r = filled.client.patch(URL, headers=filled.auth("analyst"), json=body)
    assert r.status_code == 422, r.text
    assert filled.client.get(URL, headers=filled.auth("analyst")).json()["tags"] == []


def test_patch_labels_with_nothing_to_change_changes_nothing(filled: ApiEnv) -> None:
    h = filled.auth("analyst")
    filled.client.patch(URL, headers=h, json={"name": "P", "tags": ["a"]})
    for body in ({}, {"name": None}, {"tags": None}):
        r = filled.client.patch(URL, headers=h, json=body)
        assert r.status_code == 200, r.text
        assert (r.json()["given_name"], r.json()["tags"]) == ("P", ["a"])


@pytest.mark.parametrize("ip", ["10.99.99.99", "not-an-ip", "::2"])
def test_patch_labels_unknown_asset_is_404(filled: ApiEnv, ip: str) -> None:
    r = filled.client.patch(f"/api/v1/assets/{ip}", headers=filled.auth("analyst"), json={"tags": ["x"]})
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_patch_labels_is_audited_with_who_and_what(filled: ApiEnv) -> None:
    filled.client.patch(URL, headers=filled.auth("analyst"), json={"tags": ["plc"]})
    filled.client.patch(URL, headers=filled.auth("viewer"), json={"tags": ["nope"]})
    rows = [r for r in filled.audit_rows() if r[1] == "assets.labels" or "assets" in r[2]]
    ok = [r for r in rows if r[3].startswith("ok 200")]
    assert len(ok) == 1 and ok[0][2] == "asset:127.0.0.1" and '"plc"' in ok[0][3]
    assert "analyst" in ok[0][0]
    assert any(r[3].startswith("refused 403") for r in rows)


def test_zone_by_tag_follows_the_tags_people_give(make_env: Callable[..., ApiEnv], tmp_path: Path) -> None:
    """A policy zone ``{tag: X}``: the API places an asset in it as soon as someone tags it X."""
    db = tmp_path / "zonewarden.db"
    replay([PCAPS / "modbus-pymodbus-device-id.pcap"], SensorConfig(db_path=db))
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\ndefault: deny\nzones:\n"
        "  - id: cell1\n    members: [{tag: cell1-plc}]\n"
        "  - id: by-role\n    members: [{tag: modbus_server}]\n"
    )
    env = make_env(db_path=db, policy_path=policy)
    h = env.auth("analyst")
    assert env.client.get(URL, headers=h).json()["zone"] == "by-role"  # an inferred role is a tag too
    env.client.patch(URL, headers=h, json={"tags": ["cell1-plc"]})
    assert env.client.get(URL, headers=h).json()["zone"] == "cell1"
    listed = env.client.get("/api/v1/assets", headers=h, params={"zone": "cell1"}).json()
    assert [a["ip"] for a in listed["items"]] == ["127.0.0.1"]
