"""The traffic collector behind ``policy learn`` and POST /api/v1/policy/learn keeps bounded state
however many host pairs, MACs or client ids an attacker puts on the wire (hostile input G1)."""

from __future__ import annotations

from dataclasses import replace

from policy.evaluate import MqttOp
from policy.learn import MAX_MACS_PER_HOST, TrafficCollector, render_policy
from policy.load import parse_policy
from sensor.limits import Limits
from sensor.records import FlowRef, FlowSummary


def _summary(client: str, server: str, n: int, client_mac: str = "") -> FlowSummary:
    flow = FlowRef(n, "1:x", "udp", client, 40000, server, 9999, client_mac=client_mac)
    return FlowSummary(flow, 1.0, 2.0, 1, 1, 60, 60, "new", "timeout")


def test_host_pairs_are_capped_by_limits_and_counted() -> None:
    collector = TrafficCollector(limits=replace(Limits(), policy_learn_max_host_pairs=10))
    for n in range(500):
        collector.handle(_summary(f"10.0.{n // 250}.{n % 250}", "10.1.0.1", n))
    assert len(collector.pairs) == 10
    assert len(collector.hosts) == 11  # ten clients and the one server: dropped pairs add no hosts
    assert collector.dropped_operations == 490
    text = render_policy(collector, ["test"])
    assert "# INCOMPLETE: 490 operation(s) of further host pairs were not recorded" in text
    parse_policy(text, "<learned>")


def test_known_pairs_keep_learning_after_the_cap() -> None:
    collector = TrafficCollector(limits=replace(Limits(), policy_learn_max_host_pairs=1))
    collector.handle(_summary("10.0.0.1", "10.1.0.1", 1))
    collector.handle(_summary("10.0.0.2", "10.1.0.1", 2))
    collector.handle(_summary("10.0.0.1", "10.1.0.1", 3))
    assert collector.pairs[("10.0.0.1", "10.1.0.1")].operations == 2
    assert collector.dropped_operations == 1


def test_macs_per_host_are_capped() -> None:
    collector = TrafficCollector()
    for n in range(MAX_MACS_PER_HOST * 5):
        collector.handle(
            _summary("10.0.0.1", "10.1.0.1", n, client_mac=f"02:00:00:00:{n // 256:02x}:{n % 256:02x}")
        )
    assert len(collector.hosts["10.0.0.1"].macs) == MAX_MACS_PER_HOST


def test_mqtt_client_ids_per_pair_are_capped() -> None:
    from policy.learn import MAX_DISTINCT

    collector = TrafficCollector()
    flow = FlowRef(1, "1:x", "tcp", "10.0.0.1", 40000, "10.1.0.1", 1883)
    for n in range(MAX_DISTINCT + 50):
        collector._mqtt(flow, MqttOp("connect", "", 0, False, f"client-{n}", False, 1883), 1.0)
    mqtt = collector.pairs[("10.0.0.1", "10.1.0.1")].mqtt
    assert mqtt is not None and len(mqtt.client_ids) == MAX_DISTINCT


def test_wire_values_the_policy_cannot_express_do_not_break_learning() -> None:
    # One hostile PUBLISH to 'a/#/b' (the dissector reports mqtt.wildcard_in_topic and still emits it)
    # or one Write to a string node id with a newline made the whole proposal fail to load (PolicyError),
    # so neither `policy learn` nor POST /policy/learn could produce anything.
    from policy.evaluate import OpcUaOp

    collector = TrafficCollector()
    broker = FlowRef(1, "1:x", "tcp", "10.0.0.1", 40000, "10.0.0.2", 1883)
    for topic in ("a/#/b", "plant/+x", "plant/line1/temp"):
        collector._mqtt(broker, MqttOp("publish", topic, 1, False, "c1", False, 1883), 1.0)
    collector._mqtt(broker, MqttOp("subscribe", "x/#/y", 0, False, "c1", False, 1883), 1.0)
    server = FlowRef(2, "1:y", "tcp", "10.0.0.1", 40001, "10.0.0.3", 4840)
    nodes = ("ns=1;s=a\nb", "ns=1;s=", "ns=2;i=3")
    collector._opcua(server, OpcUaOp("Write", "None", "None", nodes, "", 4840), 2.0)
    text = render_policy(collector, ["test"])
    policy = parse_policy(text, "<learned>")
    assert '"plant/line1/temp"' in text and "a/#/b" not in text and "x/#/y" not in text
    assert '"ns=2;i=3"' in text and "ns=1;s=a" not in text
    assert collector.unexpressible == 5
    assert "# 5 topic(s)/node id(s) seen that a policy cannot name were left out." in text
    assert policy.conduits
