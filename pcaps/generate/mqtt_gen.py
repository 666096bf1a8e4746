"""Generate the MQTT sample captures from real stacks: mosquitto (apt) and paho-mqtt 2.x clients.

Writes three small captures into ``pcaps/`` (or ``--out DIR``)::

    mqtt-v311-mosquitto.pcap   3.1.1: user/password login, will, SUBSCRIBE, QoS 0/1/2 PUBLISH,
                               a retained message, UNSUBSCRIBE, PING, and a refused login
    mqtt-v5-mosquitto.pcap     5.0: CONNECT/PUBLISH properties, topic aliases (bind, then empty
                               topic + alias), will with properties, QoS 2, and a refused login
    mqtt-tls-mosquitto.pcap    MQTT over TLS on 8883 with client certificates (require_certificate):
                               one TLS 1.2 session (both chains visible) and one TLS 1.3 session

mosquitto runs bound to 127.0.0.1 with a generated config, password file (mosquitto_passwd -b) and
certificates made here with ``cryptography``; nothing is kept but the captures. Needs root (tcpdump
on lo). Run: ``.venv/bin/python -m pcaps.generate.mqtt_gen``.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pcaps.generate.record import generator_main, recording

log = logging.getLogger("mqtt_gen")

HOST = "127.0.0.1"
PLAIN_PORT = 1883
TLS_PORT = 8883
USER, PASSWORD = "plant-operator", "correct-horse"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
# Fixed validity so reruns differ only in keys and times on the wire.
NOT_BEFORE = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2034, 1, 1, tzinfo=datetime.UTC)


# --- certificates -------------------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zonewarden sample plant"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a broker certificate (localhost, 127.0.0.1) and a client certificate, EC P-256."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("zonewarden sample CA"))
        .issuer_name(_name("zonewarden sample CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, server: bool) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE)
            .not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
                ),
                critical=False,
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    paths = {
        name: folder / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")
    }
    paths["ca.pem"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for role, cn in (("server", "localhost"), ("client", "line1-gateway")):
        key, cert = leaf(cn, role == "server")
        _write_key(key, paths[f"{role}.key"])
        paths[f"{role}.pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


# --- broker -----------------------------------------------------------------------------------------


def start_broker(folder: Path, pki: dict[str, Path]) -> subprocess.Popen[bytes]:
    passwd = folder / "passwd"
    passwd.touch(mode=0o600)
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(passwd), USER, PASSWORD], check=True, capture_output=True)
    conf = folder / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                "per_listener_settings true",
                "persistence false",
                "log_dest stderr",
                f"listener {PLAIN_PORT} {HOST}",
                "allow_anonymous false",
                f"password_file {passwd}",
                f"listener {TLS_PORT} {HOST}",
                f"cafile {pki['ca.pem']}",
                f"certfile {pki['server.pem']}",
                f"keyfile {pki['server.key']}",
                "require_certificate true",
                "use_identity_as_username true",
                "allow_anonymous false",
                "",
            ]
        )
    )
    # mosquitto started as root drops to the "mosquitto" user: let it read the throwaway sample
    # PKI and password file of this temporary folder.
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            with (
                socket.create_connection((HOST, TLS_PORT), timeout=0.2),
                socket.create_connection((HOST, PLAIN_PORT), timeout=0.2),
            ):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("mosquitto did not start listening")


# --- clients ----------------------------------------------------------------------------------------


class Conversation:
    """A paho client driven step by step: each call waits for the broker's answer."""

    def __init__(self, client_id: str, protocol: int, **tls: Any) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
        self.connected = threading.Event()
        self.done = threading.Event()
        self.reason: Any = None
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda *a: self.done.set()
        self.client.on_subscribe = lambda *a: self.done.set()
        self.client.on_unsubscribe = lambda *a: self.done.set()
        self.received: list[str] = []
        self.client.on_message = lambda c, u, msg: self.received.append(msg.topic)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.reason = reason
        self.connected.set()

    def connect(self, port: int = PLAIN_PORT, properties: Properties | None = None, host: str = HOST) -> Any:
        self.client.connect(host, port, keepalive=30, properties=properties)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise RuntimeError("no CONNACK")
        return self.reason

    def step(self, call: Any, *args: Any, **kw: Any) -> Any:
        self.done.clear()
        result = call(*args, **kw)
        if not self.done.wait(10):
            raise RuntimeError(f"no answer to {call.__name__}")
        return result

    def close(self) -> None:
        self.client.disconnect()
        time.sleep(0.2)
        self.client.loop_stop()


def refused_login(protocol: int) -> Any:
    c = Conversation("intruder", protocol)
    c.client.username_pw_set(USER, "wrong-password")
    reason = c.connect()
    c.client.loop_stop()
    time.sleep(0.2)
    return reason


def run_v311() -> None:
    c = Conversation("line1-plc-gw", mqtt.MQTTv311)
    c.client.username_pw_set(USER, PASSWORD)
    c.client.will_set("plant/line1/status", b"offline", qos=1, retain=True)
    c.connect()
    c.step(c.client.subscribe, "plant/+/telemetry", qos=2)
    c.step(c.client.publish, "plant/line1/telemetry", b'{"temp": 21.5}', qos=0)
    c.step(c.client.publish, "plant/line1/telemetry", b'{"temp": 21.6}', qos=1)
    c.step(c.client.publish, "plant/line1/telemetry", b'{"temp": 21.7}', qos=2)
    c.step(c.client.publish, "plant/line1/status", b"online", qos=1, retain=True)
    c.step(c.client.unsubscribe, "plant/+/telemetry")
    time.sleep(0.3)
    c.close()
    log.info("3.1.1 refused login: %s", refused_login(mqtt.MQTTv311))


def run_v5() -> None:
    c = Conversation("line2-historian", mqtt.MQTTv5)
    c.client.username_pw_set(USER, PASSWORD)
    will_props = Properties(PacketTypes.WILLMESSAGE)
    will_props.WillDelayInterval = 5
    will_props.ContentType = "text/plain"
    c.client.will_set("plant/line2/status", b"offline", qos=1, retain=True, properties=will_props)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 120
    props.TopicAliasMaximum = 8
    props.ReceiveMaximum = 20
    props.UserProperty = ("site", "plant-a")
    c.connect(properties=props)
    c.step(c.client.subscribe, "plant/line2/#", qos=2)
    bind = Properties(PacketTypes.PUBLISH)
    bind.TopicAlias = 1
    bind.ContentType = "application/json"
    bind.UserProperty = ("unit", "celsius")
    c.step(c.client.publish, "plant/line2/telemetry/temp", b'{"t": 40.1}', qos=1, properties=bind)
    use = Properties(PacketTypes.PUBLISH)
    use.TopicAlias = 1
    c.step(c.client.publish, "", b'{"t": 40.2}', qos=1, properties=use)
    c.step(c.client.publish, "", b'{"t": 40.3}', qos=2, properties=use)
    expiry = Properties(PacketTypes.PUBLISH)
    expiry.MessageExpiryInterval = 60
    c.step(c.client.publish, "plant/line2/setpoint", b"42", qos=2, retain=True, properties=expiry)
    time.sleep(0.3)
    c.close()
    log.info("5.0 refused login: %s", refused_login(mqtt.MQTTv5))


def _tls_context(pki: dict[str, Path], version: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca.pem"]))
    ctx.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


def run_tls(pki: dict[str, Path]) -> None:
    for version, client_id in (
        (ssl.TLSVersion.TLSv1_2, "line1-gateway-tls12"),
        (ssl.TLSVersion.TLSv1_3, "line1-gateway-tls13"),
    ):
        c = Conversation(client_id, mqtt.MQTTv311)
        c.client.tls_set_context(_tls_context(pki, version))
        # by name, so the ClientHello carries SNI "localhost" (the broker certificate's SAN)
        c.connect(TLS_PORT, host="localhost")
        c.step(c.client.publish, "plant/line1/secure", b"encrypted reading", qos=1)
        c.close()


def generate(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="zw-mqtt-") as tmp:
        folder = Path(tmp)
        pki = make_pki(folder)
        broker = start_broker(folder, pki)
        try:
            time.sleep(0.3)
            for name, run in (
                ("mqtt-v311-mosquitto.pcap", run_v311),
                ("mqtt-v5-mosquitto.pcap", run_v5),
                ("mqtt-tls-mosquitto.pcap", lambda: run_tls(pki)),
            ):
                target = out_dir / name
                with recording(target, f"tcp port {PLAIN_PORT} or tcp port {TLS_PORT}"):
                    time.sleep(0.3)
                    run()
                    time.sleep(0.3)
                written.append(target)
                log.info("wrote %s (%d bytes)", target, target.stat().st_size)
        finally:
            broker.terminate()
            try:
                broker.wait(timeout=5)
            except subprocess.TimeoutExpired:
                broker.kill()
                broker.wait()
    return written


def main(argv: list[str] | None = None) -> int:
    return generator_main(__doc__.splitlines()[0] if __doc__ else "", lambda out, names: generate(out), argv)


if __name__ == "__main__":
    raise SystemExit(main())
