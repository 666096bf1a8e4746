"""/api/v1/policy: current, validate (file:line problems), replace with a hot reload, compliance, learn,
export — on a store filled by a sensor running in the app, as `zonewarden serve --replay` runs one."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from zw_api_env import ApiEnv
from zw_api_running import running_env
from zw_paths import PCAPS

from policy.cli import run_check
from sensor.live import LiveRunner

LOOPBACK = """\
version: 1
site: loopback
default: deny
zones:
  - id: loopback
    members: [127.0.0.0/8]
    intra_zone: deny
conduits: []
"""
# The same zone with the Modbus polling allowed: the replayed captures then violate nothing on Modbus.
ALLOW_MODBUS = """\
version: 1
site: loopback
default: deny
zones:
  - id: loopback
    members: [127.0.0.0/8]
    intra_zone: deny
conduits:
  - id: loopback-internal
    from: loopback
    to: loopback
    allow:
      - protocol: modbus
"""
CAPTURES = ("modbus-pymodbus-polling.pcap", "mqtt-v311-mosquitto.pcap")


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[ApiEnv, LiveRunner, Path]]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(LOOPBACK)
    env, runner = running_env(tmp_path / "zonewarden.db", [PCAPS / n for n in CAPTURES], policy=policy)
    yield env, runner, policy
    env.client.close()


def test_current_policy_text_parsed_path_and_load_time(live: tuple[ApiEnv, LiveRunner, Path]) -> None:
    env, _runner, policy = live
    r = env.client.get("/api/v1/policy", headers=env.auth("viewer"))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["yaml"] == LOOPBACK and doc["path"] == str(policy)
    assert doc["policy"]["zones"][0]["id"] == "loopback" and doc["policy"]["default"] == "deny"
    assert doc["zones"] == 1 and doc["conduits"] == 0
    assert doc["loaded_at"] is not None and doc["sensor_reloads"] == 0


def test_no_policy_configured_is_404_and_replace_409(env: ApiEnv) -> None:
    assert env.client.get("/api/v1/policy", headers=env.auth("viewer")).status_code == 404
    r = env.client.put("/api/v1/policy", headers=env.auth("admin"), json={"yaml": LOOPBACK})
    assert r.status_code == 409 and r.json()["error"]["code"] == "policy_not_configured"


def test_validate_lists_every_problem_with_its_line(env: ApiEnv) -> None:
    bad = LOOPBACK.replace("intra_zone: deny", "intra_zone: sometimes") + "conduits_typo: 1\n"
    r = env.client.post("/api/v1/policy/validate", headers=env.auth("viewer"), json={"yaml": bad})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_policy"
    msgs = [d["msg"] for d in err["details"]]
    assert any(m.startswith("policy.yaml:7: zones[0].intra_zone") for m in msgs), msgs
    assert any(m.startswith("policy.yaml:9:") and "conduits_typo" in m for m in msgs), msgs
    assert all(d["loc"][:2] == ["body", "yaml"] and isinstance(d["loc"][2], int) for d in err["details"])


def test_validate_ok_with_lint_findings(env: ApiEnv) -> None:
    r = env.client.post("/api/v1/policy/validate", headers=env.auth("viewer"), json={"yaml": ALLOW_MODBUS})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["ok"] is True and doc["zones"] == 1 and doc["conduits"] == 1
    # an allow entry with no restriction at all is the kind of thing lint warns about
    assert all(f["text"].startswith(f"policy.yaml:{f['line']}: warning: ") for f in doc["findings"])


def test_yaml_alias_bomb_is_refused_through_the_api(env: ApiEnv) -> None:
    lines = ['a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    bomb = "\n".join(lines) + "\nversion: 1\n"
    started = time.monotonic()
    r = env.client.post("/api/v1/policy/validate", headers=env.auth("viewer"), json={"yaml": bomb})
    assert r.status_code == 422
    assert "too large or too deeply nested" in r.json()["error"]["message"]
    assert time.monotonic() - started < 30  # bounded work, not 10^9 nodes (a generous ceiling)


def test_python_tags_and_deep_nesting_are_problems_not_500(env: ApiEnv) -> None:
    texts = (
        "!!python/object/apply:os.system ['true']\n",
        "[" * 5000 + "]" * 5000,
        "a: b: c\n",
        "\x19",
        "a: \x01",
    )
    for text in texts:
        r = env.client.post("/api/v1/policy/validate", headers=env.auth("viewer"), json={"yaml": text})
        assert r.status_code == 422, (text[:40], r.text[:300])


def test_A5_unknown_fields_and_A6_oversized_policy(env: ApiEnv) -> None:
    h = env.auth("admin")
    r = env.client.post("/api/v1/policy/validate", headers=h, json={"yaml": LOOPBACK, "path": "/etc/passwd"})
    assert r.status_code == 422
    r = env.client.put("/api/v1/policy", headers=h, json={"yaml": LOOPBACK, "path": "../../etc/passwd"})
    assert r.status_code == 422
    r = env.client.post("/api/v1/policy/validate", headers=h, json={"yaml": "#" * (3 * 1024 * 1024)})
    assert r.status_code == 413


def test_replace_writes_atomically_hot_reloads_and_audits(live: tuple[ApiEnv, LiveRunner, Path]) -> None:
    env, runner, policy = live
    observer = runner.sensor.policy
    before = observer.policy
    r = env.client.put(
        "/api/v1/policy", headers=env.auth("admin"), json={"yaml": ALLOW_MODBUS, "comment": "allow polling"}
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["reloaded"] is True and doc["conduits"] == 1 and doc["sensor_reloads"] == 1
    assert policy.read_text() == ALLOW_MODBUS
    assert observer.policy is not before and observer.policy.policy.conduits[0].id == "loopback-internal"
    assert not list(policy.parent.glob(".policy.yaml.*"))  # no temporary file left behind
    assert env.client.get("/api/v1/policy", headers=env.auth("viewer")).json()["yaml"] == ALLOW_MODBUS
    who, what, obj, result = env.audit_rows()[-1]
    assert what == "policy.replace" and obj == "policy:policy.yaml" and result.startswith("ok 200")
    assert "allow polling" in result and who.endswith(":admin")


def test_invalid_replacement_keeps_the_old_policy_running(live: tuple[ApiEnv, LiveRunner, Path]) -> None:
    env, runner, policy = live
    before = runner.sensor.policy.policy
    bad = ALLOW_MODBUS.replace("to: loopback", "to: nowhere")
    r = env.client.put("/api/v1/policy", headers=env.auth("admin"), json={"yaml": bad})
    assert r.status_code == 422
    assert any("unknown zone 'nowhere'" in d["msg"] for d in r.json()["error"]["details"])
    assert policy.read_text() == LOOPBACK and runner.sensor.policy.policy is before
    assert env.audit_rows()[-1][1:3] == ("policy.replace", "policy:policy.yaml")
    assert env.audit_rows()[-1][3].startswith("refused 422")


@pytest.mark.parametrize("role", ["viewer", "analyst", "auditor", "pki-admin"])
def test_only_admin_replaces_or_learns(live: tuple[ApiEnv, LiveRunner, Path], role: str) -> None:
    env, _runner, policy = live
    h = env.auth(role)
    assert env.client.put("/api/v1/policy", headers=h, json={"yaml": ALLOW_MODBUS}).status_code == 403
    assert env.client.post("/api/v1/policy/learn", headers=h, json={}).status_code == 403
    assert policy.read_text() == LOOPBACK


def test_compliance_matches_policy_check_json(live: tuple[ApiEnv, LiveRunner, Path]) -> None:
    env, _runner, policy = live
    r = env.client.get("/api/v1/policy/compliance", headers=env.auth("viewer"))
    assert r.status_code == 200, r.text
    got = r.json()
    expected, errors = run_check(policy, [PCAPS / n for n in CAPTURES])
    assert errors == []
    expected = json.loads(json.dumps(expected, default=str))
    for key in ("conduits", "no_conduit", "intra_zone_allowed", "default_allowed", "unused_rules"):
        assert got[key] == expected[key], key
    assert [(v["rule"], v["src_ip"], v["dest_ip"], v["count"]) for v in got["violations"]] == [
        (v["rule"], v["src_ip"], v["dest_ip"], v["count"]) for v in expected["violations"]
    ]
    assert got["summary"]["operations"] == expected["summary"]["operations"] > 0
    assert got["summary"]["violations"] == expected["summary"]["violations"] > 0
    assert got["summary"]["sources"]["counters"] == "sensor"


def test_compliance_without_a_sensor_has_no_invented_counters(
    make_env: Callable[..., ApiEnv], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(LOOPBACK)
    env = make_env(policy_path=policy)
    doc = env.client.get("/api/v1/policy/compliance", headers=env.auth("viewer")).json()
    assert doc["violations"] == [] and doc["conduits"] is None and doc["unused_rules"] is None
    assert doc["summary"]["sources"]["counters"].startswith("unavailable")


def test_learn_proposes_a_policy_the_observed_traffic_satisfies(
    live: tuple[ApiEnv, LiveRunner, Path], tmp_path: Path
) -> None:
    env, _runner, _policy = live
    r = env.client.post("/api/v1/policy/learn", headers=env.auth("admin"), json={"site": "plant 1"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["sources"] == list(CAPTURES) and doc["hosts"] == 1 and doc["host_pairs"] == 1
    assert 'site: "plant 1"' in doc["yaml"]
    v = env.client.post("/api/v1/policy/validate", headers=env.auth("viewer"), json={"yaml": doc["yaml"]})
    assert v.status_code == 200
    learned = tmp_path / "learned.yaml"
    learned.write_text(doc["yaml"])
    report, _ = run_check(learned, [PCAPS / n for n in CAPTURES])
    assert report["violations"] == []  # the proposal allows exactly what was seen
    assert env.audit_rows()[-2][1] == "policy.learn"


def test_learn_without_a_sensor_is_409_and_never_takes_paths(env: ApiEnv) -> None:
    h = env.auth("admin")
    r = env.client.post("/api/v1/policy/learn", headers=h, json={})
    assert r.status_code == 409 and r.json()["error"]["code"] == "nothing_observed"
    r = env.client.post("/api/v1/policy/learn", headers=h, json={"pcap": ["/etc/shadow"]})
    assert r.status_code == 422  # A13: no field names a file on the server


@pytest.mark.parametrize(
    ("fmt", "media", "needle"),
    [
        ("nftables", "text/plain", "table inet"),
        ("suricata", "text/plain", "sid:"),
        ("csv", "text/csv", "zone,description"),
        ("markdown", "text/markdown", "| loopback |"),
    ],
)
def test_export_formats(live: tuple[ApiEnv, LiveRunner, Path], fmt: str, media: str, needle: str) -> None:
    env, _runner, _policy = live
    if fmt == "suricata":
        env.client.put("/api/v1/policy", headers=env.auth("admin"), json={"yaml": ALLOW_MODBUS})
    r = env.client.get("/api/v1/policy/export", headers=env.auth("viewer"), params={"format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(media)
    assert needle in r.text
    assert (
        env.client.get(
            "/api/v1/policy/export", headers=env.auth("viewer"), params={"format": "../../etc/passwd"}
        ).status_code
        == 422
    )


def test_a_policy_file_broken_on_disk_is_409_not_500(live: tuple[ApiEnv, LiveRunner, Path]) -> None:
    env, _runner, policy = live
    policy.write_text("version: 1\nzones: [\n")
    r = env.client.get("/api/v1/policy", headers=env.auth("viewer"))
    assert r.status_code == 409 and r.json()["error"]["code"] == "policy_file_invalid"
    assert r.json()["error"]["details"][0]["msg"].startswith("policy.yaml:")
