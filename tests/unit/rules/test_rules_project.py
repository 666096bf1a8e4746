"""Each project rule fires on its replay case's capture and stays quiet on normal captures."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
from zw_paths import PCAPS, REPO, SHARED_PUBLIC, shared_public_dir

from rules.engine import RuleSet, RulesObserver
from sensor.records import Alert
from sensor.runtime import Sensor, SensorConfig

sys.path.insert(0, str(REPO / "tests" / "replay"))
import builders

RULES = sorted((REPO / "rules").glob("*.rules"))

# Public captures of ordinary operation (polling, sessions, publishing): no project rule may fire.
NORMAL_PUBLIC = [
    "modbus-cset16-moving-two-files.pcap",
    "modbus-emreekin-analog-fc3-fc6.pcap",
    "modbus-iti-fc4-fc6-four-units.pcap",
    "modbus-iti-plant1-master-polling.pcap",
    "modbus-ndpi-fc3-polling.pcap",
    "modbus-sample-mask-write-fc22.pcap",
    "modbus-sample-rw-multiple-fc23.pcap",
    "modbus-zeek-big-fc1-fc5-with-s7.pcap",
    "mqtt-sv-v31-pub-qos1.pcap",
    "mqtt-sv-v311-pub-qos2.pcap",
    "mqtt-sv-v311-unsub-qos1.pcap",
    "mqtt-sv-v5-pub-mosquittoprops.pcap",
    "mqtt-sv-v5-sub-userpass.pcap",
    "mqtt-zeek-paho-v31.pcap",
    "opcua-open62541-browse-next.pcap",
    "opcua-open62541-create-monitored-items.pcap",
    "opcua-open62541-discovery.pcap",
    "opcua-python-opcua-basic256sha256.pcap",
    "opcua-python-opcua-minimal.pcap",
]

# Public captures where a project rule finds something real (documented, asserted exactly).
KNOWN_FINDINGS = {
    # Digital Bond test data: FC 8 sub-functions 4, 1 and 10 (MANIFEST.md)
    "modbus-digitalbond-testdata-part1.pcap": {9100001: 3, 9100002: 3, 9100003: 2},
    # UserName tokens with unencrypted passwords on SecurityPolicy None channels
    "opcua-open62541-mainloop.pcap": {9100202: 1},
    "opcua-python-opcua-linux-sll2.pcap": {9100202: 1},
}

EXPECTED = {
    "rules_modbus_attack": {
        9100001: 1,
        9100002: 1,
        9100003: 1,
        9100004: 1,
        9100005: 1,
        9100006: 2,
        9100007: 1,
        9100008: 1,
        9100009: 10,
        9100010: 1,
    },
    "rules_mqtt_attack": {sid: 1 for sid in range(9100101, 9100107)},
    "rules_opcua_attack": {sid: 1 for sid in range(9100201, 9100207)},
}


@pytest.fixture(scope="module")
def ruleset() -> RuleSet:
    return RuleSet.from_paths(RULES)


def alerts_of(paths: list[Path], ruleset: RuleSet) -> Counter[int]:
    alerts: list[Alert] = []
    sensor = Sensor(SensorConfig(), observers=[lambda publish: RulesObserver(alerts.append, ruleset)])
    for p in paths:
        sensor.replay_file(p)
    sensor.finish(paths)
    return Counter(a.signature_id for a in alerts)


def test_every_project_rule_has_a_firing_case(ruleset: RuleSet) -> None:
    covered = {sid for expected in EXPECTED.values() for sid in expected}
    assert covered == {r.sid for r in ruleset.rules}


@pytest.mark.parametrize("builder", sorted(EXPECTED))
def test_rules_fire_on_attack_capture(builder: str, tmp_path: Path, ruleset: RuleSet) -> None:
    out = tmp_path / f"{builder}.pcap"
    getattr(builders, builder)(out)
    assert dict(alerts_of([out], ruleset)) == EXPECTED[builder]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in PCAPS.glob("*.pcap") if not p.name.startswith("attack-"))
)
def test_quiet_on_project_captures(name: str, ruleset: RuleSet) -> None:
    assert alerts_of([PCAPS / name], ruleset) == Counter()


# The attack scenarios of pcaps/ (real stacks, see pcaps/README.md) that a signature can see at all; the
# others (new host, polling stop, drift, bursts judged against a baseline) are for the anomaly detectors.
ATTACK_FINDINGS = {
    "attack-modbus-force-listen-only.pcap.gz": {9100001: 1},
    "attack-modbus-function-code-scan.pcap.gz": {9100006: 2},
    "attack-mqtt-wildcard-subscriber.pcap.gz": {9100101: 1},
}


@pytest.mark.parametrize("name", sorted(p.name for p in PCAPS.glob("attack-*.pcap.gz")))
def test_signatures_on_project_attack_captures(name: str, ruleset: RuleSet) -> None:
    assert dict(alerts_of([PCAPS / name], ruleset)) == ATTACK_FINDINGS.get(name, {})


@pytest.mark.parametrize("name", NORMAL_PUBLIC)
def test_quiet_on_normal_public_captures(name: str, ruleset: RuleSet) -> None:
    assert alerts_of([shared_public_dir() / name], ruleset) == Counter()


@pytest.mark.parametrize("name", sorted(KNOWN_FINDINGS))
def test_known_findings_on_public_captures(name: str, ruleset: RuleSet) -> None:
    assert dict(alerts_of([shared_public_dir() / name], ruleset)) == KNOWN_FINDINGS[name]


def test_normal_list_names_existing_files() -> None:
    if not SHARED_PUBLIC.is_dir():
        pytest.skip("public captures absent")
    for name in NORMAL_PUBLIC + list(KNOWN_FINDINGS):
        assert (SHARED_PUBLIC / name).is_file(), name
