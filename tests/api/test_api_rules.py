"""/api/v1/rules: list with provenance, enable/disable a SID (enable.conf/disable.conf), offline update."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from zw_api_env import ApiEnv

from rules.manage import RULES_DIR, load_provenance

SID = 9100001  # the first shipped Modbus rule


@pytest.fixture
def rules_env(make_env: Callable[..., ApiEnv], tmp_path: Path) -> ApiEnv:
    """A copy of the shipped rules directory (never the package's own files) and a data directory."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for path in RULES_DIR.iterdir():
        if path.suffix in (".rules", ".conf", ".yaml"):
            shutil.copy(path, rules_dir / path.name)
    return make_env(rules_dir=rules_dir, rules_data_dir=tmp_path / "rules-data")


def test_list_shipped_rules_with_provenance_and_filters(env: ApiEnv) -> None:
    h = env.auth("viewer")
    page = env.client.get("/api/v1/rules", headers=h).json()
    assert page["active"] is False and page["total"] == len(page["items"]) > 10
    first = next(r for r in page["items"] if r["sid"] == SID)
    assert first["source"] == "zonewarden" and first["file"] == "zonewarden-modbus.rules"
    unsupported = env.client.get("/api/v1/rules", headers=h, params={"unsupported": "true"}).json()
    assert all(r["status"] in ("unsupported", "invalid") for r in unsupported["items"])
    assert env.client.get("/api/v1/rules", headers=h, params={"q": "(a+)+$"}).json()["total"] == 0
    small = env.client.get("/api/v1/rules", headers=h, params={"limit": 2, "offset": 1}).json()
    assert [r["sid"] for r in small["items"]] == [r["sid"] for r in page["items"][1:3]]
    assert env.client.get("/api/v1/rules", headers=h, params={"limit": 5000}).status_code == 422


def test_changes_refused_without_a_rules_dir(env: ApiEnv) -> None:
    before = (RULES_DIR / "disable.conf").read_text()
    for path in (f"/api/v1/rules/{SID}/disable", f"/api/v1/rules/{SID}/enable", "/api/v1/rules/update"):
        r = env.client.post(path, headers=env.auth("admin"), json={})
        assert r.status_code == 409 and r.json()["error"]["code"] == "rules_not_configured", path
    assert (RULES_DIR / "disable.conf").read_text() == before


def test_disable_then_enable_moves_the_sid_between_the_conf_files(rules_env: ApiEnv) -> None:
    rules_dir = rules_env.settings.rules_dir
    assert rules_dir is not None
    h = rules_env.auth("admin")
    r = rules_env.client.post(f"/api/v1/rules/{SID}/disable", headers=h, json={"comment": "noisy"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "gid": 1,
        "sid": SID,
        "enabled": False,
        "changed": True,
        "note": "applied by the next rules update",
    }
    assert f"1:{SID}" in (rules_dir / "disable.conf").read_text().splitlines()
    again = rules_env.client.post(f"/api/v1/rules/{SID}/disable", headers=h, json={})
    assert again.json()["changed"] is False
    r = rules_env.client.post(f"/api/v1/rules/{SID}/enable", headers=h, json={})
    assert r.json()["changed"] is True
    assert f"1:{SID}" not in (rules_dir / "disable.conf").read_text().splitlines()
    assert f"1:{SID}" in (rules_dir / "enable.conf").read_text().splitlines()
    audit = [row for row in rules_env.audit_rows() if row[1].startswith("rules.")]
    assert [(row[1], row[2]) for row in audit] == [
        ("rules.disable", f"rule:{SID}"),
        ("rules.disable", f"rule:{SID}"),
        ("rules.enable", f"rule:{SID}"),
    ]
    assert "noisy" in audit[0][3]


def test_unknown_sid_is_404_and_bad_sids_422(rules_env: ApiEnv) -> None:
    h = rules_env.auth("admin")
    assert rules_env.client.post("/api/v1/rules/8999999/enable", headers=h, json={}).status_code == 404
    for sid in ("0", "-1", "99999999999", "..%2f..%2fetc", "abc"):
        status = rules_env.client.post(f"/api/v1/rules/{sid}/enable", headers=h, json={}).status_code
        assert status in (400, 422), (sid, status)


@pytest.mark.parametrize("role", ["viewer", "analyst", "auditor", "pki-admin"])
def test_only_admin_changes_rules(rules_env: ApiEnv, role: str) -> None:
    h = rules_env.auth(role)
    for path in (f"/api/v1/rules/{SID}/disable", "/api/v1/rules/update"):
        assert rules_env.client.post(path, headers=h, json={}).status_code == 403
    assert rules_env.client.get("/api/v1/rules", headers=h).status_code == 200


def test_offline_update_builds_the_active_set_and_applies_disable(rules_env: ApiEnv) -> None:
    pytest.importorskip("suricata.update", reason="suricata-update is not installed")
    h = rules_env.auth("admin")
    assert rules_env.client.post(f"/api/v1/rules/{SID}/disable", headers=h, json={}).status_code == 200
    r = rules_env.client.post("/api/v1/rules/update", headers=h, json={"comment": "weekly"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["rules"] > 10 and out["by_source"] == {"zonewarden": out["rules"]}
    assert out["enabled"] == out["rules"] - 1
    data_dir = rules_env.settings.rules_data_dir
    assert data_dir is not None and load_provenance(data_dir) is not None
    page = rules_env.client.get("/api/v1/rules", headers=h, params={"limit": 1000}).json()
    assert page["active"] is True
    disabled = next(rec for rec in page["items"] if rec["sid"] == SID)
    assert disabled["enabled"] is False and disabled["status"] == "disabled"
    assert rules_env.audit_rows()[-1][1:] == ("rules.update", "rules:active", "ok 200: weekly")
