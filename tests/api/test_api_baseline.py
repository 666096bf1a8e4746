"""/api/v1/baseline: status, accept an anomaly alert from the store (file and running sensor), reset, diff."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from zw_api_env import ApiEnv
from zw_api_running import running_env
from zw_paths import PCAPS

from sensor.detect.baseline import Baseline
from sensor.runtime import SensorConfig, replay

ATTACK = PCAPS / "attack-modbus-new-host-write.pcap.gz"
ROGUE_RULES = ["anomaly:new_asset", "anomaly:rogue_master_write"]


@pytest.fixture
def learned(tmp_path: Path) -> tuple[Path, Path]:
    """A store with the anomaly alerts of the attack capture and the baseline learned before them."""
    if not ATTACK.exists():
        pytest.skip(f"{ATTACK} missing (make it with pcaps/generate/attacks_gen.py)")
    db, base = tmp_path / "zonewarden.db", tmp_path / "baseline.json"
    summary, _ = replay([ATTACK], SensorConfig(db_path=db, learn_for=5.0, baseline_path=base))
    assert summary["baseline"]["mode"] == "detecting"
    return db, base


def _anomaly_ids(env: ApiEnv) -> list[str]:
    page = env.client.get("/api/v1/alerts", headers=env.auth("viewer"), params={"category": "anomaly"}).json()
    assert sorted(a["rule"] for a in page["items"]) == ROGUE_RULES
    return [a["alert_id"] for a in page["items"]]


def test_status_without_a_baseline(env: ApiEnv) -> None:
    doc = env.client.get("/api/v1/baseline", headers=env.auth("viewer")).json()
    assert doc["configured"] is False and doc["mode"] == "none" and doc["counts"] == {}
    r = env.client.post("/api/v1/baseline/reset", headers=env.auth("analyst"), json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "baseline_not_configured"


def test_status_of_the_stored_file(make_env: Callable[..., ApiEnv], learned: tuple[Path, Path]) -> None:
    db, base = learned
    env = make_env(db_path=db, baseline_path=base)
    doc = env.client.get("/api/v1/baseline", headers=env.auth("viewer")).json()
    saved = Baseline.load(base)
    assert doc["mode"] == "stored" and doc["exists"] is True and doc["path"] == str(base)
    assert doc["revision"] == saved.revision and doc["counts"] == saved.counts()
    assert doc["counts"]["modbus_function"] > 0


def test_accept_folds_evidence_so_the_behaviour_no_longer_alerts(
    make_env: Callable[..., ApiEnv], learned: tuple[Path, Path], tmp_path: Path
) -> None:
    db, base = learned
    env = make_env(db_path=db, baseline_path=base)
    before = Baseline.load(base).revision
    for alert_id in _anomaly_ids(env):
        r = env.client.post(
            "/api/v1/baseline/accept",
            headers=env.auth("analyst"),
            json={"alert_id": alert_id, "comment": "new engineering laptop"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["added"] > 0 and r.json()["live"] is False
    assert Baseline.load(base).revision == before + 2
    audit = [row for row in env.audit_rows() if row[1] == "baseline.accept"]
    assert len(audit) == 2 and all(row[3].startswith("ok 200") for row in audit)
    # the same capture against the accepted baseline raises nothing (as `zonewarden baseline accept`)
    summary, _ = replay([ATTACK], SensorConfig(db_path=tmp_path / "again.db", baseline_path=base))
    assert summary["alerts"]["total"] == 0
    diff = env.client.get("/api/v1/baseline/diff", headers=env.auth("viewer")).json()
    assert diff["against"] == "last_revision" and diff["detail"]["action"] == "accept"


def test_accept_refusals(make_env: Callable[..., ApiEnv], learned: tuple[Path, Path]) -> None:
    db, base = learned
    env = make_env(db_path=db, baseline_path=base)
    h = env.auth("analyst")
    r = env.client.post("/api/v1/baseline/accept", headers=h, json={"alert_id": "0" * 16})
    assert r.status_code == 404 and r.json()["error"]["message"] == "no such alert"
    r = env.client.post("/api/v1/baseline/accept", headers=h, json={"alert_id": "../../etc/passwd"})
    assert r.status_code == 422
    r = env.client.post(
        "/api/v1/baseline/accept", headers=h, json={"alert_id": "x", "facts": [["asset", "1"]]}
    )
    assert r.status_code == 422  # A5: evidence comes from the store, never from the caller
    for role in ("viewer", "auditor", "pki-admin"):
        r = env.client.post("/api/v1/baseline/accept", headers=env.auth(role), json={"alert_id": "x"})
        assert r.status_code == 403


def test_accept_a_policy_alert_is_409(make_env: Callable[..., ApiEnv], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nzones:\n  - id: lo\n    members: [127.0.0.0/8]\n    intra_zone: deny\nconduits: []\n"
    )
    db, base = tmp_path / "zonewarden.db", tmp_path / "baseline.json"
    replay(
        [PCAPS / "modbus-pymodbus-polling.pcap"],
        SensorConfig(db_path=db, policy_path=policy, baseline_path=base, learn_for=1e9),
    )
    env = make_env(db_path=db, baseline_path=base)
    alert = env.client.get("/api/v1/alerts", headers=env.auth("viewer"), params={"category": "policy"})
    alert_id = alert.json()["items"][0]["alert_id"]
    r = env.client.post("/api/v1/baseline/accept", headers=env.auth("analyst"), json={"alert_id": alert_id})
    assert r.status_code == 409 and "not an anomaly" in r.json()["error"]["message"]


def test_reset_one_asset_with_relearn_then_everything(
    make_env: Callable[..., ApiEnv], learned: tuple[Path, Path]
) -> None:
    db, base = learned
    env = make_env(db_path=db, baseline_path=base)
    h = env.auth("analyst")
    ip = sorted(ip for (_s, ip) in Baseline.load(base).sets["asset"])[0]
    r = env.client.post("/api/v1/baseline/reset", headers=h, json={"asset": {"ip": ip, "relearn": 60}})
    assert r.status_code == 200, r.text
    assert r.json()["removed"] > 0 and Baseline.load(base).relearn == {ip: 60.0}
    assert ("asset", ip) not in Baseline.load(base).sets["asset"]
    for bad in ("1.2.3", 0, False, "../../etc"):  # 0 and false would otherwise mean 0.0.0.0
        r = env.client.post("/api/v1/baseline/reset", headers=h, json={"asset": {"ip": bad}})
        assert r.status_code == 422, bad
    r = env.client.post("/api/v1/baseline/reset", headers=h, json={"relearn": 5, "asset": None})
    assert r.status_code == 422
    r = env.client.post("/api/v1/baseline/reset", headers=h, json={"comment": "re-commissioned"})
    assert r.status_code == 200 and r.json()["detail"] == "reset everything"
    assert sum(Baseline.load(base).counts().values()) == 0
    assert env.audit_rows()[-1][1:3] == ("baseline.reset", "baseline")


def test_live_sensor_accept_updates_the_running_baseline(learned: tuple[Path, Path], tmp_path: Path) -> None:
    _db, base = learned
    env, runner = running_env(tmp_path / "live.db", [ATTACK], baseline=base)
    try:
        status = env.client.get("/api/v1/baseline", headers=env.auth("viewer")).json()
        assert status["mode"] == "detecting" and status["sensor"]["alerts"] == 2
        ids = _anomaly_ids(env)
        r = env.client.post("/api/v1/baseline/accept", headers=env.auth("admin"), json={"alert_id": ids[0]})
        assert r.status_code == 200 and r.json()["live"] is True
        observer = runner.sensor.anomaly
        assert observer is not None and observer.baseline.revision == r.json()["revision"]
        assert Baseline.load(base).revision == observer.baseline.revision  # saved at once
        diff = env.client.get("/api/v1/baseline/diff", headers=env.auth("viewer")).json()
        assert diff["against"] == "saved" and diff["added"] == [] and diff["removed"] == []
    finally:
        env.client.close()
