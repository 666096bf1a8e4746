"""Rule keywords: each one compiled once, at load, into a predicate over zonewarden's own events.

Suricata's documented semantics are followed where Suricata has the keyword:

* integers (``mqtt.qos``, ``mqtt.protocol_version``, ...): Suricata "Integer Keywords" - ``N``, ``=N``,
  ``!N``, ``!=N``, ``>N``, ``>=N``, ``<N``, ``<=N``, ``A-B`` (exclusive), ``!A-B``, ``&mask=v``,
  ``&mask!=v``; names for enumerations (``mqtt.type:PUBLISH``);
* ``modbus:`` - Suricata "Modbus Keyword": ``function`` (code, ``!``-negatable class ``assigned``,
  ``unassigned``, ``public``, ``user``, ``reserved``, ``all``) with ``subfunction``; ``access read|write``
  with table ``discretes|coils|input|holding``, ``address`` and ``value`` (``N``, ``<N``, ``>N``, ``A<>B``,
  all strict); ``unit``. **Addresses in rules start at 1** (the doc's note), the PDU's start at 0: rule
  address ``A`` is PDU address ``A - 1``. It matches requests, as Suricata's does;
* sticky buffers + ``content`` (``nocase``, ``depth``, ``offset``, ``distance``, ``within``, ``startswith``,
  ``endswith``, negation, ``|hex|``) + ``pcre`` (``/re/ismxR``) + ``bsize``;
* ``threshold`` and ``detection_filter`` (Suricata "Thresholding Keywords"), in packet time.

zonewarden's own OPC UA keywords use the same syntax: ``opcua.service``, ``opcua.security_mode``,
``opcua.status_code``, ``opcua.user_token`` take a comma list of names (``!`` negates);
``opcua.security_policy`` takes a policy name or URI, or without a value is a sticky buffer, as are
``opcua.nodeid`` (every NodeId of the request) and ``opcua.endpoint_url``.

A keyword not in :data:`KEYWORDS` makes the rule *unsupported*: it is reported and never loaded, so it
can neither pass nor match silently.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from rules.parse import unquote
from sensor.dissectors.modbus.events import ModbusTransaction
from sensor.dissectors.mqtt import codes as mqtt_codes
from sensor.dissectors.mqtt.events import MqttPacket
from sensor.dissectors.mqtt.frames import CodesAck, Connack, Connect, PacketIdAck, Publish, ReasonOnly
from sensor.dissectors.mqtt.frames import Subscribe as MqttSubscribe
from sensor.dissectors.mqtt.frames import Unsubscribe as MqttUnsubscribe
from sensor.dissectors.opcua.events import OpcUaChannelEvent, OpcUaMessage, OpcUaTransport
from sensor.records import ProtocolAnomaly

Predicate = Callable[[Any], bool]


class RuleInvalid(ValueError):
    """A keyword value that does not make sense (Suricata would refuse to load the rule)."""


class RuleUnsupported(ValueError):
    """A keyword (or a use of one) the engine does not evaluate: the rule is reported, not loaded."""


# --- classtypes (Suricata's classification.config: name -> (description, priority)) ------------

CLASSTYPES: dict[str, tuple[str, int]] = {
    "not-suspicious": ("Not Suspicious Traffic", 3),
    "unknown": ("Unknown Traffic", 3),
    "bad-unknown": ("Potentially Bad Traffic", 2),
    "attempted-recon": ("Attempted Information Leak", 2),
    "successful-recon-limited": ("Information Leak", 2),
    "successful-recon-largescale": ("Large Scale Information Leak", 2),
    "attempted-dos": ("Attempted Denial of Service", 2),
    "successful-dos": ("Denial of Service", 2),
    "attempted-user": ("Attempted User Privilege Gain", 1),
    "unsuccessful-user": ("Unsuccessful User Privilege Gain", 1),
    "successful-user": ("Successful User Privilege Gain", 1),
    "attempted-admin": ("Attempted Administrator Privilege Gain", 1),
    "successful-admin": ("Successful Administrator Privilege Gain", 1),
    "rpc-portmap-decode": ("Decode of an RPC Query", 2),
    "shellcode-detect": ("Executable code was detected", 1),
    "string-detect": ("A suspicious string was detected", 3),
    "suspicious-filename-detect": ("A suspicious filename was detected", 2),
    "suspicious-login": ("An attempted login using a suspicious username was detected", 2),
    "system-call-detect": ("A system call was detected", 2),
    "tcp-connection": ("A TCP connection was detected", 4),
    "trojan-activity": ("A Network Trojan was detected", 1),
    "unusual-client-port-connection": ("A client was using an unusual port", 2),
    "network-scan": ("Detection of a Network Scan", 3),
    "denial-of-service": ("Detection of a Denial of Service Attack", 2),
    "non-standard-protocol": ("Detection of a non-standard protocol or event", 2),
    "protocol-command-decode": ("Generic Protocol Command Decode", 3),
    "web-application-activity": ("access to a potentially vulnerable web application", 2),
    "web-application-attack": ("Web Application Attack", 1),
    "misc-activity": ("Misc activity", 3),
    "misc-attack": ("Misc Attack", 2),
    "icmp-event": ("Generic ICMP event", 3),
    "inappropriate-content": ("Inappropriate Content was Detected", 1),
    "policy-violation": ("Potential Corporate Privacy Violation", 1),
    "default-login-attempt": ("Attempt to login by a default username and password", 2),
    "targeted-activity": ("Targeted Malicious Activity was Detected", 1),
    "exploit-kit": ("Exploit Kit Activity Detected", 1),
    "external-ip-check": ("Device Retrieving External IP Address Detected", 2),
    "domain-c2": ("Domain Observed Used for C2 Detected", 1),
    "pup-activity": ("Possibly Unwanted Program Detected", 2),
    "credential-theft": ("Successful Credential Theft Detected", 1),
    "social-engineering": ("Possible Social Engineering Attempted", 2),
    "coin-mining": ("Crypto Currency Mining Activity Detected", 2),
    "command-and-control": ("Malware Command and Control Activity Detected", 1),
}

# --- variables, addresses and ports -------------------------------------------------------------

DEFAULT_VARS: dict[str, str] = {
    "HOME_NET": "[192.168.0.0/16,10.0.0.0/8,172.16.0.0/12]",
    "EXTERNAL_NET": "!$HOME_NET",
    "HTTP_SERVERS": "$HOME_NET",
    "SMTP_SERVERS": "$HOME_NET",
    "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET",
    "TELNET_SERVERS": "$HOME_NET",
    "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET",
    "DNP3_SERVER": "$HOME_NET",
    "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET",
    "MODBUS_SERVER": "$HOME_NET",
    "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
    "OPCUA_CLIENT": "$HOME_NET",
    "OPCUA_SERVER": "$HOME_NET",
    "MQTT_CLIENT": "$HOME_NET",
    "MQTT_BROKER": "$HOME_NET",
    "HTTP_PORTS": "80",
    "SHELLCODE_PORTS": "!80",
    "ORACLE_PORTS": "1521",
    "SSH_PORTS": "22",
    "DNP3_PORTS": "20000",
    "MODBUS_PORTS": "502",
    "MQTT_PORTS": "[1883,8883]",
    "OPCUA_PORTS": "4840",
    "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081",
    "VXLAN_PORTS": "4789",
    "TEREDO_PORTS": "3544",
}

_MAX_VAR_DEPTH = 16
_T = TypeVar("_T")


@functools.lru_cache(maxsize=65536)
def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _split_list(text: str) -> list[str]:
    """Items of ``a,b,[c,d]`` at the top level."""
    items: list[str] = []
    depth = 0
    buf: list[str] = []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(buf).strip())
            buf.clear()
        else:
            buf.append(ch)
    items.append("".join(buf).strip())
    return [i for i in items if i]


def _resolve(text: str, variables: dict[str, str], depth: int) -> str:
    if depth > _MAX_VAR_DEPTH:
        raise RuleInvalid(f"variable nesting deeper than {_MAX_VAR_DEPTH} (a loop?) at {text!r}")
    name = text[1:]
    if name not in variables:
        raise RuleInvalid(f"undefined variable ${name}")
    return variables[name]


def _compile_field(
    text: str,
    variables: dict[str, str],
    depth: int,
    atom: Callable[[str], Callable[[_T], bool]],
    what: str,
) -> Callable[[_T], bool] | None:
    """An address or port field of a rule header -> a predicate; ``None`` means ``any``.

    Both fields share Suricata's grammar: ``any``, ``!x``, ``$VAR``, ``[a, !b, ...]`` (a value
    must match one positive item, if any, and no negative one); ``atom`` compiles one value.
    """
    text = text.strip()
    if text == "any":
        return None
    if text.startswith("!"):
        inner = _compile_field(text[1:], variables, depth + 1, atom, what)
        if inner is None:
            raise RuleInvalid("'!any' matches nothing")
        return lambda value: not inner(value)
    if text.startswith("$"):
        return _compile_field(_resolve(text, variables, depth), variables, depth + 1, atom, what)
    if not text.startswith("["):
        return atom(text)
    if not text.endswith("]"):
        raise RuleInvalid(f"unbalanced {what} list {text!r}")
    items = _split_list(text[1:-1])
    if not items:
        raise RuleInvalid(f"empty {what} list")
    positives: list[Callable[[_T], bool]] = []
    negatives: list[Callable[[_T], bool]] = []
    any_positive = False
    for item in items:
        negate = item.startswith("!")
        sub = _compile_field(item[1:] if negate else item, variables, depth + 1, atom, what)
        if sub is None:
            if negate:
                raise RuleInvalid("'!any' matches nothing")
            any_positive = True
        elif negate:
            negatives.append(sub)
        else:
            positives.append(sub)
    pos = None if any_positive or not positives else tuple(positives)
    neg = tuple(negatives)
    return lambda value: (pos is None or any(p(value) for p in pos)) and not any(n(value) for n in neg)


def _address(text: str) -> Callable[[str], bool]:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise RuleInvalid(f"bad address {text!r}") from exc

    def in_net(ip: str) -> bool:
        addr = _ip(ip)
        return addr is not None and addr.version == net.version and addr in net

    return in_net


def _port(text: str) -> Callable[[int], bool]:
    m = re.fullmatch(r"(\d*)\s*:\s*(\d*)", text)
    if m:
        low = int(m.group(1)) if m.group(1) else 0
        high = int(m.group(2)) if m.group(2) else 65535
        if low > high or high > 65535:
            raise RuleInvalid(f"bad port range {text!r}")
        return lambda port: low <= port <= high
    if text.isdigit() and int(text) <= 65535:
        value = int(text)
        return lambda port: port == value
    raise RuleInvalid(f"bad port {text!r}")


def compile_addresses(text: str, variables: dict[str, str], depth: int = 0) -> Callable[[str], bool] | None:
    """Address field -> predicate over an IP string; ``None`` means ``any`` (no test needed)."""
    return _compile_field(text, variables, depth, _address, "address")


def compile_ports(text: str, variables: dict[str, str], depth: int = 0) -> Callable[[int], bool] | None:
    """Port field -> predicate over a port number; ``None`` means ``any``."""
    return _compile_field(text, variables, depth, _port, "port")


# --- integers (Suricata "Integer Keywords") -------------------------------------------------------


def _number(text: str, names: dict[str, int] | None = None) -> int:
    text = text.strip()
    if names is not None and text.upper() in names:
        return names[text.upper()]
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError as exc:
        raise RuleInvalid(f"not an integer: {text!r}") from exc


def compile_uint(
    text: str, names: dict[str, int] | None = None, maximum: int = 0xFF
) -> Callable[[int], bool]:
    """Predicate for one integer comparison in Suricata's syntax."""
    t = text.strip()
    if not t:
        raise RuleInvalid("empty integer value")
    m = re.fullmatch(r"&\s*(\w+)\s*(!?=)\s*(\w+)", t)
    if m:
        mask, op, val = _number(m.group(1)), m.group(2), _number(m.group(3))
        if val & ~mask:
            raise RuleInvalid(f"bitmask {t!r} can never match")
        return (lambda v: (v & mask) == val) if op == "=" else (lambda v: (v & mask) != val)
    negate = False
    if t.startswith("!") and not t.startswith("!="):
        negate, t = True, t[1:].strip()
    m = re.fullmatch(r"(\w+)\s*-\s*(\w+)", t)
    if m:
        low, high = _number(m.group(1), names), _number(m.group(2), names)
        if low >= high:
            raise RuleInvalid(f"empty range {text!r}")
        if negate:
            return lambda v: v <= low or v >= high
        return lambda v: low < v < high
    for op in (">=", "<=", "!=", ">", "<", "="):
        if t.startswith(op):
            n = _number(t[len(op) :], names)
            pred: Callable[[int], bool] = {
                ">=": lambda v, n=n: v >= n,
                "<=": lambda v, n=n: v <= n,
                "!=": lambda v, n=n: v != n,
                ">": lambda v, n=n: v > n,
                "<": lambda v, n=n: v < n,
                "=": lambda v, n=n: v == n,
            }[op]
            if negate:
                raise RuleInvalid(f"'!' cannot prefix {op!r} in {text!r}")
            return pred
    n = _number(t, names)
    if n > maximum:
        raise RuleInvalid(f"{n} is out of range (max {maximum})")
    return (lambda v: v != n) if negate else (lambda v: v == n)


def compile_modbus_range(text: str) -> Callable[[int], bool]:
    """The modbus keyword's own ``<value>`` form: ``N``, ``<N``, ``>N``, ``A<>B`` (all strict)."""
    t = text.strip()
    m = re.fullmatch(r"(\d+)\s*<>\s*(\d+)", t)
    if m:
        low, high = int(m.group(1)), int(m.group(2))
        if low >= high:
            raise RuleInvalid(f"empty range {t!r}")
        return lambda v: low < v < high
    m = re.fullmatch(r"([<>])\s*(\d+)", t)
    if m:
        n = int(m.group(2))
        return (lambda v: v < n) if m.group(1) == "<" else (lambda v: v > n)
    if t.isdigit():
        n = int(t)
        return lambda v: v == n
    raise RuleInvalid(f"bad modbus value {t!r} (N, <N, >N or A<>B)")


# --- the modbus keyword ----------------------------------------------------------------------------

_MODBUS_CLASSES: dict[str, frozenset[str]] = {
    "assigned": frozenset({"public_assigned"}),
    "unassigned": frozenset({"public_unassigned"}),
    "public": frozenset({"public_assigned", "public_unassigned"}),
    "user": frozenset({"user_defined"}),
    "reserved": frozenset({"reserved"}),
    "all": frozenset({"public_assigned", "public_unassigned", "user_defined", "reserved", "invalid"}),
}

# (access, table) per function code; FC 23 both reads and writes holding registers.
_READ_TABLE = {1: "coils", 2: "discretes", 3: "holding", 4: "input", 23: "holding"}
_WRITE_TABLE = {5: "coils", 15: "coils", 6: "holding", 16: "holding", 22: "holding", 23: "holding"}
_TABLES = frozenset({"discretes", "coils", "input", "holding"})


def _modbus_accesses(tx: ModbusTransaction, access: str) -> list[tuple[str, int, tuple[int, ...]]]:
    """(table, first PDU address, written values) of the request's read or write part."""
    req = tx.request
    if req is None:
        return []
    fc = tx.function
    if access == "read":
        table = _READ_TABLE.get(fc)
        if table is None or req.address is None:
            return []
        return [(table, req.address, ())]
    table = _WRITE_TABLE.get(fc)
    if table is None:
        return []
    if fc == 23:
        if req.write_address is None:
            return []
        return [(table, req.write_address, tuple(int(v) for v in req.write_values))]
    if req.address is None:
        return []
    return [(table, req.address, tuple(int(v) for v in req.values))]


def _modbus_quantity(tx: ModbusTransaction, access: str) -> int:
    req = tx.request
    if req is None:
        return 0
    if access == "write" and tx.function == 23:
        return req.write_quantity or 0
    if tx.function in (5, 6, 22):
        return 1
    return req.quantity or 0


def compile_modbus(value: str) -> Predicate:
    """``modbus: [unit U,] function F[, subfunction S]`` or ``[unit U,] access read|write [table][, address
    A[, value V]]`` (Suricata modbus keyword)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts:
        raise RuleInvalid("modbus needs a setting")
    unit: Callable[[int], bool] | None = None
    function: Callable[[ModbusTransaction], bool] | None = None
    subfunction: int | None = None
    access: str | None = None
    table: str | None = None
    address: Callable[[int], bool] | None = None
    written: Callable[[int], bool] | None = None
    for part in parts:
        word, _, rest = part.partition(" ")
        rest = rest.strip()
        if word == "unit":
            unit = compile_modbus_range(rest)
        elif word == "function":
            negate = rest.startswith("!")
            name = rest[1:].strip() if negate else rest
            if name.lower() in _MODBUS_CLASSES:
                classes = _MODBUS_CLASSES[name.lower()]
                function = (
                    (lambda tx, c=classes: tx.code_class not in c)
                    if negate
                    else (lambda tx, c=classes: tx.code_class in c)
                )
            else:
                code = _number(name)
                if not 0 <= code <= 255:
                    raise RuleInvalid(f"function code {code} out of range")
                function = (
                    (lambda tx, c=code: tx.function != c) if negate else (lambda tx, c=code: tx.function == c)
                )
        elif word == "subfunction":
            subfunction = _number(rest)
        elif word == "access":
            bits = rest.split()
            if not bits or bits[0] not in ("read", "write"):
                raise RuleInvalid("access needs 'read' or 'write'")
            access = bits[0]
            if len(bits) > 1:
                table = bits[1]
                if table not in _TABLES:
                    raise RuleInvalid(f"unknown modbus table {table!r}")
                if access == "write" and table in ("discretes", "input"):
                    raise RuleInvalid(f"{table} is a read-only table")
            if len(bits) > 2:
                raise RuleInvalid(f"unexpected {bits[2:]!r} after access")
        elif word == "address":
            address = compile_modbus_range(rest)
        elif word == "value":
            written = compile_modbus_range(rest)
        else:
            raise RuleInvalid(f"unknown modbus setting {word!r}")
    if function is None and access is None and unit is None:
        raise RuleInvalid("modbus needs function, access or unit")
    if function is not None and access is not None:
        raise RuleInvalid("modbus takes function or access, not both")
    if subfunction is not None and function is None:
        raise RuleInvalid("subfunction needs function")
    if (address is not None or written is not None) and table is None:
        raise RuleInvalid("address needs an access table")
    if written is not None and (access != "write" or address is None):
        raise RuleInvalid("value needs 'access write <table>, address <value>'")

    def match(tx: Any) -> bool:
        if type(tx) is not ModbusTransaction or tx.request is None:
            return False
        if unit is not None and not unit(tx.unit_id):
            return False
        if function is not None:
            if not function(tx):
                return False
            if subfunction is not None and tx.request.subfunction != subfunction:
                return False
        if access is not None:
            hits = _modbus_accesses(tx, access)
            if not hits:
                return False
            if table is None:
                return True
            quantity = max(1, _modbus_quantity(tx, access))
            for tab, first, values in hits:
                if tab != table:
                    continue
                if address is None:
                    return True
                # rule addresses start at 1 (Suricata modbus keyword doc): PDU address + 1
                for i in range(min(quantity, 2000)):
                    if not address(first + 1 + i):
                        continue
                    if written is None:
                        return True
                    if i < len(values) and written(values[i]):
                        return True
            return False
        return True

    return match


# --- buffers --------------------------------------------------------------------------------------

BufferGetter = Callable[[Any], list[bytes]]
_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-fA-F]{2})")


def _text(value: str | None) -> list[bytes]:
    return [] if value is None else [value.encode("utf-8", "surrogateescape")]


def _preview(value: str) -> bytes:
    """Bytes of a payload preview (``\\xNN`` escapes of the dissector turned back into bytes)."""
    raw = value.encode("utf-8", "surrogateescape")
    return _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), raw) if b"\\x" in raw else raw


def _mqtt(ev: Any) -> Any:
    return ev.message if type(ev) is MqttPacket else None


def _connect(ev: Any) -> Connect | None:
    m = _mqtt(ev)
    return m if isinstance(m, Connect) else None


def _publish(ev: Any) -> Publish | None:
    m = _mqtt(ev)
    return m if isinstance(m, Publish) else None


def _buf_clientid(ev: Any) -> list[bytes]:
    c = _connect(ev)
    return _text(c.client_id) if c else []


def _buf_username(ev: Any) -> list[bytes]:
    c = _connect(ev)
    return _text(c.username) if c else []


def _buf_protocol_string(ev: Any) -> list[bytes]:
    c = _connect(ev)
    return _text(c.protocol_name) if c else []


def _buf_willtopic(ev: Any) -> list[bytes]:
    c = _connect(ev)
    return _text(c.will.topic) if c and c.will else []


def _buf_willmessage(ev: Any) -> list[bytes]:
    c = _connect(ev)
    return [_preview(c.will.payload_preview)] if c and c.will else []


def _buf_publish_topic(ev: Any) -> list[bytes]:
    p = _publish(ev)
    return _text(p.topic) if p else []


def _buf_publish_message(ev: Any) -> list[bytes]:
    p = _publish(ev)
    return [_preview(p.payload_preview)] if p else []


def _buf_subscribe_topic(ev: Any) -> list[bytes]:
    m = _mqtt(ev)
    return (
        [s.topic_filter.encode("utf-8", "surrogateescape") for s in m.subscriptions]
        if isinstance(m, MqttSubscribe)
        else []
    )


def _buf_unsubscribe_topic(ev: Any) -> list[bytes]:
    m = _mqtt(ev)
    return (
        [t.encode("utf-8", "surrogateescape") for t in m.topic_filters]
        if isinstance(m, MqttUnsubscribe)
        else []
    )


def _buf_mqtt_topic(ev: Any) -> list[bytes]:
    """zonewarden extension: the PUBLISH topic (alias resolved), an ack's topic, or any filter."""
    if type(ev) is not MqttPacket:
        return []
    if ev.topic:
        return _text(ev.topic)
    return _buf_subscribe_topic(ev) or _buf_unsubscribe_topic(ev)


_NODE_KEYS = ("node_id", "object_id", "method_id", "starting_node", "parent_node_id", "requested_new_node_id")
_MAX_NODES = 1000


def _collect_nodeids(obj: Any, out: list[bytes]) -> None:
    stack = [obj]
    while stack and len(out) < _MAX_NODES:
        cur = stack.pop()
        if isinstance(cur, dict):
            for key, val in cur.items():
                if key in _NODE_KEYS and isinstance(val, str):
                    out.append(val.encode())
                elif isinstance(val, dict | list):
                    stack.append(val)
        elif isinstance(cur, list):
            stack.extend(cur)


def _buf_nodeid(ev: Any) -> list[bytes]:
    if type(ev) is not OpcUaMessage or not ev.request:
        return []
    out: list[bytes] = []
    _collect_nodeids(ev.request, out)
    return out


def _buf_endpoint_url(ev: Any) -> list[bytes]:
    kind = type(ev)
    if kind is OpcUaTransport:
        url = ev.fields.get("endpoint_url")
        return _text(url) if isinstance(url, str) else []
    if kind is OpcUaMessage and ev.request:
        url = ev.request.get("endpoint_url")
        return _text(url) if isinstance(url, str) else []
    return []


def _buf_security_policy(ev: Any) -> list[bytes]:
    kind = type(ev)
    if kind is OpcUaMessage or kind is OpcUaChannelEvent:
        return _text(ev.security_policy) if ev.security_policy else []
    return []


# buffer name -> (app_proto, getter)
BUFFERS: dict[str, tuple[str, BufferGetter]] = {
    "mqtt.connect.clientid": ("mqtt", _buf_clientid),
    "mqtt.connect.username": ("mqtt", _buf_username),
    "mqtt.connect.protocol_string": ("mqtt", _buf_protocol_string),
    "mqtt.connect.willtopic": ("mqtt", _buf_willtopic),
    "mqtt.connect.willmessage": ("mqtt", _buf_willmessage),
    "mqtt.publish.topic": ("mqtt", _buf_publish_topic),
    "mqtt.publish.message": ("mqtt", _buf_publish_message),
    "mqtt.subscribe.topic": ("mqtt", _buf_subscribe_topic),
    "mqtt.unsubscribe.topic": ("mqtt", _buf_unsubscribe_topic),
    "mqtt.topic": ("mqtt", _buf_mqtt_topic),
    "opcua.nodeid": ("opcua", _buf_nodeid),
    "opcua.endpoint_url": ("opcua", _buf_endpoint_url),
    "opcua.security_policy": ("opcua", _buf_security_policy),
}

# Buffers Suricata has that zonewarden deliberately does not keep.
UNSUPPORTED_BUFFERS: dict[str, str] = {
    "mqtt.connect.password": "MQTT passwords are never kept (DESIGN.md §5)",
}


# --- content / pcre ----------------------------------------------------------------------------------


def parse_content(value: str) -> tuple[bytes, bool]:
    """``"text|41 42|"`` (optionally ``!"..."``) -> (pattern bytes, negated)."""
    v = value.strip()
    negated = v.startswith("!")
    if negated:
        v = v[1:].strip()
    if len(v) < 2 or v[0] != '"' or v[-1] != '"':
        raise RuleInvalid(f"content must be quoted: {value!r}")
    body = v[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out += body[i + 1].encode()
            i += 2
        elif ch == "|":
            end = body.find("|", i + 1)
            if end < 0:
                raise RuleInvalid(f"unterminated hex in content {value!r}")
            hexpart = body[i + 1 : end].replace(" ", "")
            try:
                out += bytes.fromhex(hexpart)
            except ValueError as exc:
                raise RuleInvalid(f"bad hex {hexpart!r} in content") from exc
            i = end + 1
        else:
            out += ch.encode("utf-8")
            i += 1
    if not out:
        raise RuleInvalid("empty content")
    return bytes(out), negated


@dataclass(slots=True)
class ContentItem:
    """One ``content`` with its modifiers, or one ``pcre``."""

    pattern: bytes = b""
    negated: bool = False
    nocase: bool = False
    offset: int | None = None
    depth: int | None = None
    distance: int | None = None
    within: int | None = None
    startswith: bool = False
    endswith: bool = False
    regex: re.Pattern[bytes] | None = None
    relative_regex: bool = False

    @property
    def relative(self) -> bool:
        return self.distance is not None or self.within is not None or self.relative_regex


_PCRE = re.compile(r"^\s*(!?)\s*\"/(.*)/([A-Za-z]*)\"\s*$", re.S)


def parse_pcre(value: str) -> ContentItem:
    m = _PCRE.match(value)
    if m is None:
        raise RuleInvalid(f'pcre must look like "/re/flags": {value!r}')
    negated, body, flags = m.group(1) == "!", m.group(2), m.group(3)
    reflags = 0
    relative = False
    for f in flags:
        if f == "i":
            reflags |= re.I
        elif f == "s":
            reflags |= re.S
        elif f == "m":
            reflags |= re.M
        elif f == "x":
            reflags |= re.X
        elif f == "R":
            relative = True
        else:
            raise RuleUnsupported(f"pcre flag {f!r} is not supported")
    try:
        regex = re.compile(body.encode("utf-8"), reflags)
    except re.error as exc:
        raise RuleInvalid(f"pcre does not compile: {exc}") from exc
    return ContentItem(negated=negated, regex=regex, relative_regex=relative)


_MAX_BACKTRACK = 64


def _find(item: ContentItem, buf: bytes, prev_end: int, start_from: int) -> tuple[int, int] | None:
    """First match of one item at or after ``start_from``: (start, end), or None."""
    if item.regex is not None:
        pos = prev_end if item.relative_regex else 0
        m = item.regex.search(buf, max(pos, start_from))
        return (m.start(), m.end()) if m else None
    if item.relative:
        lo = prev_end + (item.distance or 0)
        hi = len(buf) if item.within is None else lo + item.within
    else:
        lo = item.offset or 0
        hi = len(buf) if item.depth is None else lo + item.depth
    lo = max(lo, start_from, 0)
    hi = min(hi, len(buf))
    if hi - lo < len(item.pattern):
        return None
    hay = buf[lo:hi]
    idx = hay.lower().find(item.pattern.lower()) if item.nocase else hay.find(item.pattern)
    if idx < 0:
        return None
    start = lo + idx
    return start, start + len(item.pattern)


def _match_items(items: list[ContentItem], buf: bytes, i: int, prev_end: int, budget: list[int]) -> bool:
    if i == len(items):
        return True
    item = items[i]
    if item.negated:
        found = _find(item, buf, prev_end, 0)
        if item.endswith and found is not None and found[1] != len(buf):
            found = None
        return found is None and _match_items(items, buf, i + 1, prev_end, budget)
    start_from = 0
    while budget[0] > 0:
        budget[0] -= 1
        found = _find(item, buf, prev_end, start_from)
        if found is None:
            return False
        start, end = found
        ok = not (item.startswith and start != 0) and not (item.endswith and end != len(buf))
        if ok and _match_items(items, buf, i + 1, end, budget):
            return True
        if item.startswith:
            return False
        start_from = start + 1
    return False


def compile_content_group(
    getter: BufferGetter, items: list[ContentItem], bsize: Callable[[int], bool] | None
) -> Predicate:
    """All items must match, in order, within one instance of the buffer (any instance will do)."""
    frozen = list(items)

    def match(ev: Any) -> bool:
        for buf in getter(ev):
            if bsize is not None and not bsize(len(buf)):
                continue
            if _match_items(frozen, buf, 0, 0, [_MAX_BACKTRACK]):
                return True
        return False

    return match


# --- mqtt value keywords -----------------------------------------------------------------------------

_MQTT_TYPES = {name: n for n, name in enumerate(mqtt_codes.PACKET_TYPE_NAMES)}
_MQTT_TYPES["UNASSIGNED"] = 0


def _mqtt_int(
    getter: Callable[[MqttPacket], list[int]], value: str, names: dict[str, int] | None = None
) -> Predicate:
    pred = compile_uint(value, names)

    def match(ev: Any) -> bool:
        return type(ev) is MqttPacket and any(pred(v) for v in getter(ev))

    return match


def _mqtt_qos(ev: MqttPacket) -> list[int]:
    m = ev.message
    if isinstance(m, Publish):
        return [m.qos]
    # PUBREL, SUBSCRIBE and UNSUBSCRIBE carry fixed-header flags 0b0010, i.e. QoS bits = 1.
    return [1] if ev.packet_type in (6, 8, 10) else [0]


def _mqtt_reason_codes(ev: MqttPacket) -> list[int]:
    m = ev.message
    if isinstance(m, Connack):
        return [m.code]
    if isinstance(m, PacketIdAck | ReasonOnly) and ev.protocol_version == 5:
        return [m.code]
    if isinstance(m, CodesAck):
        return list(m.codes)
    return []


def _flag_list(
    value: str, known: dict[str, Callable[[Any], bool]]
) -> list[tuple[Callable[[Any], bool], bool]]:
    checks: list[tuple[Callable[[Any], bool], bool]] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        negate = item.startswith("!")
        name = item[1:].strip() if negate else item
        if name not in known:
            raise RuleInvalid(f"unknown flag {name!r} (known: {', '.join(sorted(known))})")
        checks.append((known[name], negate))
    if not checks:
        raise RuleInvalid("no flags given")
    return checks


def _mqtt_flags(value: str) -> Predicate:
    checks = _flag_list(
        value,
        {
            "dup": lambda m: isinstance(m, Publish) and m.dup,
            "retain": lambda m: isinstance(m, Publish) and m.retain,
        },
    )
    return lambda ev: type(ev) is MqttPacket and all(bool(f(ev.message)) != neg for f, neg in checks)


def _mqtt_connect_flags(value: str) -> Predicate:
    checks = _flag_list(
        value,
        {
            "username": lambda c: c.username is not None,
            "password": lambda c: c.password_present,
            "will": lambda c: c.will is not None,
            "will_retain": lambda c: c.will is not None and c.will.retain,
            "clean_session": lambda c: c.clean_start,
        },
    )

    def match(ev: Any) -> bool:
        c = _connect(ev)
        return c is not None and all(bool(f(c)) != neg for f, neg in checks)

    return match


def _bool_value(value: str) -> bool:
    v = value.strip().lower()
    if v in ("yes", "true"):
        return True
    if v in ("no", "false"):
        return False
    raise RuleInvalid(f"expected yes/true/no/false, got {value!r}")


def _mqtt_session_present(value: str) -> Predicate:
    want = _bool_value(value)
    return lambda ev: (
        type(ev) is MqttPacket and isinstance(ev.message, Connack) and ev.message.session_present == want
    )


# --- opcua value keywords ------------------------------------------------------------------------------


def _name_list(value: str) -> tuple[frozenset[str], bool]:
    v = value.strip()
    negate = v.startswith("!")
    names = frozenset(n.strip().lower() for n in (v[1:] if negate else v).split(",") if n.strip())
    if not names:
        raise RuleInvalid("empty name list")
    return names, negate


def _opcua_names(getter: Callable[[Any], str | None], value: str) -> Predicate:
    names, negate = _name_list(value)

    def match(ev: Any) -> bool:
        got = getter(ev)
        if got is None:
            return False
        return (got.lower() in names) != negate

    return match


def _opcua_service(ev: Any) -> str | None:
    return ev.service if type(ev) is OpcUaMessage and ev.service else None


def _opcua_mode(ev: Any) -> str | None:
    kind = type(ev)
    if (kind is OpcUaMessage or kind is OpcUaChannelEvent) and ev.security_mode:
        return str(ev.security_mode)
    return None


def _opcua_status(ev: Any) -> str | None:
    return ev.status if type(ev) is OpcUaMessage and ev.status else None


def _opcua_user_token(ev: Any) -> str | None:
    if type(ev) is not OpcUaMessage or not ev.request:
        return None
    token = ev.request.get("user_identity_token")
    if isinstance(token, dict):
        value = token.get("token_type")
        return str(value) if value else None
    return None


def _opcua_policy_value(value: str) -> Predicate:
    names, negate = _name_list(value)

    def match(ev: Any) -> bool:
        kind = type(ev)
        if not (kind is OpcUaMessage or kind is OpcUaChannelEvent) or not ev.security_policy:
            return False
        uri = ev.security_policy.lower()
        short = uri.rsplit("#", 1)[-1]
        return (uri in names or short in names) != negate

    return match


# --- app-layer-event (ProtocolAnomaly) -------------------------------------------------------------------


def _app_layer_event(value: str) -> tuple[str, Predicate]:
    v = unquote(value).strip()
    negate = v.startswith("!")
    kind = v[1:] if negate else v
    app, dot, _ = kind.partition(".")
    if not dot:
        raise RuleUnsupported(f"app-layer-event without a protocol prefix ({kind!r})")
    return app.lower(), lambda ev: type(ev) is ProtocolAnomaly and (ev.kind == kind) != negate


# --- registry ----------------------------------------------------------------------------------------------

# keyword -> (app_proto, compile(value) -> predicate) for value keywords
ValueCompiler = Callable[[str], Predicate]
VALUE_KEYWORDS: dict[str, tuple[str, ValueCompiler]] = {
    "modbus": ("modbus", compile_modbus),
    "mqtt.protocol_version": ("mqtt", lambda v: _mqtt_int(lambda e: [e.protocol_version], v)),
    "mqtt.type": ("mqtt", lambda v: _mqtt_int(lambda e: [e.packet_type], v, _MQTT_TYPES)),
    "mqtt.qos": ("mqtt", lambda v: _mqtt_int(_mqtt_qos, v)),
    "mqtt.reason_code": ("mqtt", lambda v: _mqtt_int(_mqtt_reason_codes, v)),
    "mqtt.connack.return_code": ("mqtt", lambda v: _mqtt_int(_mqtt_reason_codes, v)),
    "mqtt.flags": ("mqtt", _mqtt_flags),
    "mqtt.connect.flags": ("mqtt", _mqtt_connect_flags),
    "mqtt.connack.session_present": ("mqtt", _mqtt_session_present),
    "opcua.service": ("opcua", lambda v: _opcua_names(_opcua_service, v)),
    "opcua.security_mode": ("opcua", lambda v: _opcua_names(_opcua_mode, v)),
    "opcua.status_code": ("opcua", lambda v: _opcua_names(_opcua_status, v)),
    "opcua.user_token": ("opcua", lambda v: _opcua_names(_opcua_user_token, v)),
    "opcua.security_policy": ("opcua", _opcua_policy_value),
}

# Suricata's header protocols that name an app layer zonewarden dissects.
APP_PROTOS = frozenset({"modbus", "mqtt", "opcua", "tls"})
TRANSPORT_PROTOS = frozenset({"tcp", "udp", "ip", "any", "tcp-pkt", "tcp-stream"})

# Options about the rule itself: read at compile time, never evaluated per event.
META_KEYWORDS = frozenset(
    {"msg", "sid", "gid", "rev", "classtype", "priority", "metadata", "reference", "target"}
)
CONTENT_MODIFIERS = frozenset(
    {"nocase", "depth", "offset", "distance", "within", "startswith", "endswith", "fast_pattern"}
)
OTHER_KEYWORDS = frozenset(
    {"content", "pcre", "bsize", "flow", "threshold", "detection_filter", "app-layer-event"}
)
