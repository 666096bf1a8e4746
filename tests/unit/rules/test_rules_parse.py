"""Rule parsing: the project's rules/ and the rule examples of Suricata's Modbus and MQTT keyword docs."""

from __future__ import annotations

import pytest
from zw_paths import REPO

from rules.engine import RuleSet
from rules.parse import RuleSyntaxError, parse_rule, parse_rules_text

# The `modbus:` keyword examples of Suricata's documentation (doc/userguide/rules/modbus-keyword.rst).
MODBUS_DOC_EXAMPLES = [
    "function 21",
    "function 4, subfunction 4",
    "function assigned",
    "function public",
    "function user",
    "function reserved",
    "function !reserved",
    "access read",
    "access write",
    "access read input",
    "access write coils",
    "access read discretes, address <100",
    "access write holding, address 500, value >200",
    "unit 10",
    "unit 10, function 21",
    "unit 10, function 4, subfunction 4",
    "unit 10, function assigned",
    "unit 10, function !reserved",
    "unit 10, access read",
    "unit 10, access write coils",
    "unit >10, access read discretes, address <100",
    "unit 10<>20, access write holding, address 500, value >200",
]

# The keyword examples of Suricata's MQTT keyword documentation (doc/userguide/rules/mqtt-keywords.rst);
# mqtt.connect.password is Suricata's too but zonewarden never keeps passwords (reported unsupported).
MQTT_DOC_EXAMPLES = [
    "mqtt.protocol_version:5;",
    "mqtt.type:CONNECT;",
    "mqtt.type:PUBLISH;",
    "mqtt.type:2;",
    "mqtt.flags:dup,!retain;",
    "mqtt.flags:retain;",
    "mqtt.qos:0;",
    "mqtt.qos:2;",
    "mqtt.type:UNSUBACK; mqtt.reason_code:17;",
    "mqtt.type:PUBACK; mqtt.reason_code:16;",
    "mqtt.connack.session_present:true;",
    'mqtt.connect.clientid; pcre:"/^mosq.*/";',
    'mqtt.connect.clientid; content:"myclient";',
    "mqtt.connect.flags:username,password,!will;",
    "mqtt.connect.flags:username,!password;",
    "mqtt.connect.flags:clean_session;",
    'mqtt.connect.protocol_string; content:"MQTT";',
    'mqtt.connect.protocol_string; content:"MQIsdp";',
    'mqtt.connect.username; content:"benson";',
    'mqtt.connect.willmessage; pcre:"/^fooba[rz]/";',
    'mqtt.connect.willmessage; content:"hunter2";',
    'mqtt.connect.willtopic; pcre:"/^hunter[0-9]/";',
    'mqtt.type:PUBLISH; mqtt.publish.message; pcre:"/uid=[0-9]+/";',
    'mqtt.type:PUBLISH; mqtt.publish.message; content:"|FF D8 FF E0|"; startswith;',
    'mqtt.publish.topic; content:"mytopic";',
    'mqtt.subscribe.topic; content:"mytopic";',
    'mqtt.unsubscribe.topic; content:"mytopic";',
]


def _rule(options: str, proto: str = "mqtt", sid: int = 1) -> str:
    return f'alert {proto} any any -> any any (msg:"t"; {options} sid:{sid}; rev:1;)'


def test_project_rules_parse_and_all_load() -> None:
    files = sorted((REPO / "rules").glob("*.rules"))
    assert len(files) == 3
    ruleset = RuleSet.from_paths(files)
    assert ruleset.rejected == []
    assert len(ruleset.rules) == 22
    for rule in ruleset.rules:
        assert 9_100_000 <= rule.sid <= 9_199_999, rule.sid
        assert rule.parsed.msg and rule.classtype, rule.sid
        assert rule.mitre and all(t.startswith("T0") for t in rule.mitre), rule.sid


@pytest.mark.parametrize("example", MODBUS_DOC_EXAMPLES)
def test_modbus_doc_examples_load(example: str) -> None:
    ruleset = RuleSet.compile([parse_rule(_rule(f"modbus: {example};", "modbus"))])
    assert ruleset.rejected == [] and len(ruleset.rules) == 1


@pytest.mark.parametrize("example", MQTT_DOC_EXAMPLES)
def test_mqtt_doc_examples_load(example: str) -> None:
    ruleset = RuleSet.compile([parse_rule(_rule(example))])
    assert ruleset.rejected == [], ruleset.rejected
    assert ruleset.rules[0].app_proto == "mqtt"


def test_mqtt_password_buffer_reported_unsupported() -> None:
    ruleset = RuleSet.compile([parse_rule(_rule('mqtt.connect.password; content:"swordfish";'))])
    assert ruleset.rules == []
    assert ruleset.rejected[0].status == "unsupported"
    assert "password" in ruleset.rejected[0].reason


def test_options_with_escaped_semicolons_and_quotes() -> None:
    r = parse_rule(r'alert mqtt any any -> any any (msg:"a\;b \"q\""; content:"x\;y"; sid:5; rev:3; gid:2;)')
    assert r.msg == 'a;b "q"'
    assert r.sid == 5 and r.rev == 3 and r.gid == 2
    assert ("content", r'"x\;y"') in r.options


def test_header_lists_with_spaces_and_bidirectional() -> None:
    r = parse_rule("alert modbus [10.0.0.0/8, !10.1.0.0/16] [1024:, !2000] <> $HOME_NET 502 (sid:1;)")
    assert r.src == "[10.0.0.0/8,!10.1.0.0/16]" and r.direction == "<>"


@pytest.mark.parametrize(
    "text",
    [
        'alert modbus any any -> any any (msg:"x";)',  # no sid
        "alert modbus any any => any any (sid:1;)",  # bad direction
        "frobnicate modbus any any -> any any (sid:1;)",  # bad action
        "alert modbus any any -> any (sid:1;)",  # six header fields
        'alert modbus any any -> any any (msg:"x; sid:1;)',  # unterminated quote
        "alert modbus any any -> any any (sid:1; msg:x)",  # last option not terminated
    ],
)
def test_bad_rules_raise_syntax_error(text: str) -> None:
    with pytest.raises(RuleSyntaxError):
        parse_rule(text, "f.rules", 7)


def test_rules_file_keeps_disabled_rules_and_errors_with_line_numbers() -> None:
    text = "\n".join(
        [
            "# a comment",
            '# alert modbus any any -> any any (msg:"off"; modbus: function 8; sid:10;)',
            'alert modbus any any -> any any (msg:"on"; \\',
            "  modbus: function 90; sid:11;)",
            'alert modbus any any -> any any (msg:"bad";)',
        ]
    )
    rules, errors = parse_rules_text(text, "x.rules")
    assert [(r.sid, r.enabled, r.line) for r in rules] == [(10, False, 2), (11, True, 3)]
    assert len(errors) == 1 and str(errors[0]).startswith("x.rules:5:")
