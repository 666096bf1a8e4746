"""Captures that make each project rule (rules/*.rules) fire, for the rules_* replay cases.

Modbus and MQTT frames are laid out by hand from the specs (MODBUS v1.1b3, MQTT 3.1.1 / 5.0);
OPC UA service bodies are encoded by asyncua's binary encoder and wrapped in UA-TCP / secure
conversation chunks with SecurityPolicy None (OPC 10000-6 §7.1.2, §6.7.2).
"""

from __future__ import annotations

import struct
from pathlib import Path

from builders import Conversation, _write, mbap

T1 = 1_700_100_000.0


# --- Modbus ------------------------------------------------------------------------------------------


def modbus_attack(out: Path) -> None:
    convs = []
    c = Conversation("10.9.0.10", "10.9.0.20", 40001, 502, t0=T1).handshake()
    tid = 0

    def req(unit: int, pdu: bytes, resp: bytes | None = None) -> None:
        nonlocal tid
        tid += 1
        c.send(True, mbap(tid, unit, pdu))
        c.send(False, mbap(tid, unit, resp if resp is not None else pdu))

    req(1, struct.pack(">BHH", 8, 4, 0), b"")  # 9100001 force listen only (no response by design)
    req(1, struct.pack(">BHH", 8, 1, 0))  # 9100002 restart communications
    req(1, struct.pack(">BHH", 8, 10, 0))  # 9100003 clear counters
    req(1, bytes([90, 0x00, 0x02]), bytes([90, 0xFE]))  # 9100004 UMAS
    req(1, bytes([125, 0x01]), bytes([125 | 0x80, 1]))  # 9100005 firmware replacement (+ reserved 9100006)
    req(0, struct.pack(">BHH", 6, 7, 99))  # 9100007 write to broadcast unit 0
    req(1, struct.pack(">BHH", 6, 0, 65000))  # 9100010 holding register 1 (PDU 0) = 65000
    req(1, struct.pack(">BHH", 6, 1, 65000))  # rule address 2: must not fire 9100010
    for unit in range(1, 6):  # 9100008: FC43/14 to five units, alert after the 4th
        req(unit, bytes([43, 14, 1, 0]), bytes([43, 14, 1, 1, 0, 0, 0]))
    convs.append(c.close())
    burst = Conversation("10.9.0.11", "10.9.0.21", 40002, 502, t0=T1 + 10).handshake()
    for i in range(1, 211):  # 9100009: 210 writes within a second, alerts on the 201st..210th
        burst.send(True, mbap(i, 1, struct.pack(">BHH", 5, i % 100, 0xFF00)))
        burst.send(False, mbap(i, 1, struct.pack(">BHH", 5, i % 100, 0xFF00)))
    convs.append(burst.close())
    _write(out, *convs)


# --- MQTT --------------------------------------------------------------------------------------------


def _vbi(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _vbi(len(body)) + body


def _connect(
    client_id: str, level: int = 4, will: tuple[str, bytes] | None = None, user: str | None = None
) -> bytes:
    flags = 0x02
    payload = _s(client_id)
    if will is not None:
        flags |= 0x04 | 0x20  # will, will retain
        payload += _s(will[0]) + struct.pack(">H", len(will[1])) + will[1]
    if user is not None:
        flags |= 0xC0
        payload += _s(user) + _s("secret")
    props = b"\x00" if level == 5 else b""
    will_props = b"\x00" if level == 5 and will is not None else b""
    if will_props:
        payload = _s(client_id) + will_props + payload[len(_s(client_id)) :]
    return _packet(0x10, _s("MQTT") + bytes([level, flags]) + struct.pack(">H", 30) + props + payload)


def _connack(code: int, level: int = 4) -> bytes:
    return _packet(0x20, bytes([0, code]) + (b"\x00" if level == 5 else b""))


def mqtt_attack(out: Path) -> None:
    convs = []
    c = Conversation("10.9.1.10", "10.9.1.20", 41001, 1883, t0=T1).handshake()
    c.send(True, _connect("sweeper", will=("plant/line1/cmd", b"open")))  # 9100106
    c.send(False, _connack(0))
    c.send(True, _packet(0x82, struct.pack(">H", 1) + _s("#") + b"\x00"))  # 9100101
    c.send(False, _packet(0x90, struct.pack(">H", 1) + b"\x00"))
    c.send(True, _packet(0x82, struct.pack(">H", 2) + _s("$SYS/broker/clients/#") + b"\x00"))  # 9100102
    c.send(False, _packet(0x90, struct.pack(">H", 2) + b"\x00"))
    c.send(True, _packet(0x31, _s("plant/line1/cmd") + b"valve=open"))  # 9100103 retained command
    c.send(True, _packet(0x31, _s("plant/line1/status") + b"ok"))  # retained status: quiet
    convs.append(c.close())
    for i in range(4):  # 9100104: four refused 3.1.1 logins; alert on the 4th
        b = Conversation("10.9.1.11", "10.9.1.20", 41100 + i, 1883, t0=T1 + 5 + i).handshake()
        b.send(True, _connect(f"guess{i}", user="admin"))
        b.send(False, _connack(5))
        convs.append(b.close())
    for i in range(4):  # 9100105: four refused MQTT 5 logins (0x86); alert on the 4th
        b = Conversation("10.9.1.12", "10.9.1.21", 41200 + i, 1883, t0=T1 + 20 + i).handshake()
        b.send(True, _connect(f"v5guess{i}", level=5, user="admin"))
        b.send(False, _connack(0x86, level=5))
        convs.append(b.close())
    _write(out, *convs)


# --- OPC UA ------------------------------------------------------------------------------------------


def _ua_string(text: str | None) -> bytes:
    if text is None:
        return struct.pack("<i", -1)
    raw = text.encode()
    return struct.pack("<i", len(raw)) + raw


def _chunk(kind: bytes, body: bytes) -> bytes:
    return kind + b"F" + struct.pack("<I", 8 + len(body)) + body


class _UaChannel:
    """Client and server halves of one UA-TCP connection with SecurityPolicy None."""

    def __init__(
        self, conv: Conversation, policy: str = "None", url: str = "opc.tcp://10.9.2.20:4840/"
    ) -> None:
        self.c = conv
        self.policy = f"http://opcfoundation.org/UA/SecurityPolicy#{policy}"
        self.seq = 0
        self.req = 0
        self.channel = 7
        hel = struct.pack("<5I", 0, 65536, 65536, 0, 0) + _ua_string(url)
        conv.send(True, _chunk(b"HEL", hel))
        conv.send(False, _chunk(b"ACK", struct.pack("<5I", 0, 65536, 65536, 0, 0)))

    def _asym(self, to_server: bool, body: bytes) -> bytes:
        self.seq += 1
        head = struct.pack("<I", 0 if to_server else self.channel) + _ua_string(self.policy)
        head += struct.pack("<ii", -1, -1) + struct.pack("<II", self.seq, self.req)
        return _chunk(b"OPN", head + body)

    def _sym(self, body: bytes) -> bytes:
        self.seq += 1
        return _chunk(b"MSG", struct.pack("<IIII", self.channel, 1, self.seq, self.req) + body)

    def open(self) -> None:
        from asyncua import ua
        from asyncua.ua.ua_binary import struct_to_binary

        self.req += 1
        request = ua.OpenSecureChannelRequest()
        request.Parameters.SecurityMode = ua.MessageSecurityMode.None_
        request.Parameters.RequestedLifetime = 3600000
        request.RequestHeader.RequestHandle = self.req
        self.c.send(True, self._asym(True, struct_to_binary(request)))
        response = ua.OpenSecureChannelResponse()
        response.ResponseHeader.RequestHandle = self.req
        response.Parameters.SecurityToken.ChannelId = self.channel
        response.Parameters.SecurityToken.TokenId = 1
        response.Parameters.SecurityToken.RevisedLifetime = 3600000
        self.c.send(False, self._asym(False, struct_to_binary(response)))

    def call(self, request: object, response: object) -> None:
        from asyncua.ua.ua_binary import struct_to_binary

        self.req += 1
        request.RequestHeader.RequestHandle = self.req  # type: ignore[attr-defined]
        response.ResponseHeader.RequestHandle = self.req  # type: ignore[attr-defined]
        self.c.send(True, self._sym(struct_to_binary(request)))
        self.c.send(False, self._sym(struct_to_binary(response)))


def opcua_attack(out: Path) -> None:
    from asyncua import ua

    convs = []
    conv = Conversation("10.9.2.10", "10.9.2.20", 42001, 4840, t0=T1).handshake()
    ch = _UaChannel(conv)
    ch.open()
    activate = ua.ActivateSessionRequest()
    token = ua.UserNameIdentityToken()
    token.PolicyId = "username"
    token.UserName = "operator"
    token.Password = b"cleartext"
    activate.Parameters.UserIdentityToken = token
    ch.call(activate, ua.ActivateSessionResponse())  # 9100202 UserName on mode None
    delete = ua.DeleteNodesRequest()
    item = ua.DeleteNodesItem()
    item.NodeId = ua.NodeId(1001, 2)
    delete.Parameters.NodesToDelete = [item]
    ch.call(delete, ua.DeleteNodesResponse())  # 9100201
    write = ua.WriteRequest()
    wv = ua.WriteValue()
    wv.NodeId = ua.NodeId(2256, 0)  # Server_ServerStatus
    wv.AttributeId = ua.AttributeIds.Value
    wv.Value = ua.DataValue(ua.Variant(0, ua.VariantType.Int32))
    write.Parameters.NodesToWrite = [wv]
    ch.call(write, ua.WriteResponse())  # 9100205
    ok_write = ua.WriteRequest()
    wv2 = ua.WriteValue()
    wv2.NodeId = ua.NodeId(3, 2)  # an ordinary process variable: quiet
    wv2.AttributeId = ua.AttributeIds.Value
    wv2.Value = ua.DataValue(ua.Variant(True, ua.VariantType.Boolean))
    ok_write.Parameters.NodesToWrite = [wv2]
    ch.call(ok_write, ua.WriteResponse())
    convs.append(conv.close())

    legacy = Conversation("10.9.2.11", "10.9.2.20", 42002, 4840, t0=T1 + 5).handshake()
    _UaChannel(legacy, policy="Basic128Rsa15").open()  # 9100203
    convs.append(legacy.close())

    traversal = Conversation("10.9.2.12", "10.9.2.20", 42003, 4840, t0=T1 + 8).handshake()
    _UaChannel(traversal, url="opc.tcp://10.9.2.20:4840/../../etc/")  # 9100206
    convs.append(traversal.close())

    for i in range(4):  # 9100204: four rejected activations; alert on the 4th
        b = Conversation("10.9.2.13", "10.9.2.20", 42100 + i, 4840, t0=T1 + 10 + i).handshake()
        bch = _UaChannel(b)
        bch.open()
        req = ua.ActivateSessionRequest()
        resp = ua.ActivateSessionResponse()
        resp.ResponseHeader.ServiceResult = ua.StatusCode(ua.StatusCodes.BadIdentityTokenRejected)
        bch.call(req, resp)
        convs.append(b.close())
    _write(out, *convs)
