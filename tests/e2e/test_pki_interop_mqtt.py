"""Interop with mosquitto and paho-mqtt: broker and client certificates from zonewarden's CA.

mosquitto runs on 127.0.0.1 on a free port with ``require_certificate true`` and the exported CA chain
and CRL; a paho client with an ``mqtt-client`` certificate connects (CONNACK success). After the client
certificate is revoked and the CRL exported again, a freshly started mosquitto refuses that client while
a second, unrevoked client still connects (so the refusal is the revocation, not a broken setup).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from api.pki.cli import main

MOSQUITTO = Path("/usr/sbin/mosquitto")
pytestmark = pytest.mark.skipif(
    not MOSQUITTO.exists(), reason="mosquitto not installed at /usr/sbin/mosquitto"
)

mqtt = pytest.importorskip("paho.mqtt.client")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key_and_csr(tmp: Path, name: str, cn: str, sans: list[x509.GeneralName]) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = tmp / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    csr_path = tmp / f"{name}.csr"
    csr_path.write_bytes(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return key_path, csr_path


class Broker:
    def __init__(self, conf: Path, log: Path, port: int) -> None:
        self.conf, self.log, self.port = conf, log, port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen([str(MOSQUITTO), "-c", str(self.conf)], stdout=handle, stderr=handle)
        handle.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"mosquitto did not listen: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _connect(port: int, chain: Path, cert: Path, key: Path, client_id: str) -> tuple[bool, str]:
    """(CONNACK success?, what happened). Never raises: a TLS refusal is the expected failure mode."""
    done = threading.Event()
    outcome: dict[str, object] = {"ok": False, "why": "no CONNACK within 5 s"}
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)

    def on_connect(_c: object, _u: object, _f: object, reason_code: object, _p: object) -> None:
        outcome["ok"] = not getattr(reason_code, "is_failure", True)
        outcome["why"] = f"CONNACK {reason_code}"
        done.set()

    def on_disconnect(_c: object, _u: object, _f: object, reason_code: object, _p: object) -> None:
        outcome["why"] = f"disconnected: {reason_code}"
        done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.tls_set(ca_certs=str(chain), certfile=str(cert), keyfile=str(key))
    try:
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        done.wait(5)
    except OSError as exc:  # ssl.SSLError is an OSError
        outcome["why"] = f"{type(exc).__name__}: {exc}"
    finally:
        client.loop_stop()
        try:
            client.disconnect()
        except OSError:
            pass
    return bool(outcome["ok"]), str(outcome["why"])


@pytest.fixture
def broker_setup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[dict[str, object]]:
    pw = tmp_path / "pw"
    pw.write_bytes(b"mqtt interop passphrase")
    pw.chmod(0o600)
    common = ["--dir", str(tmp_path / "ca"), "--passphrase-file", str(pw)]
    assert main(["pki", "init", *common, "--key", "ecdsa-p256"]) == 0

    def issue(profile: str, name: str, cn: str, sans: list[x509.GeneralName]) -> tuple[Path, Path, str]:
        key, csr = _key_and_csr(tmp_path, name, cn, sans)
        cert = tmp_path / f"{name}.pem"
        code = main(["pki", "issue", *common, "--profile", profile, "--csr", str(csr), "--out", str(cert)])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return cert, key, captured.out.strip()

    import ipaddress

    broker_cert, broker_key, _ = issue(
        "mqtt-broker",
        "broker",
        "broker",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
    )
    bundle = tmp_path / "bundle"
    assert main(["pki", "export", "--dir", common[1], "--format", "pem-bundle", "--out", str(bundle)]) == 0
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        "\n".join(
            [
                "user root",  # the test runs as root; do not drop to 'mosquitto' who cannot read tmp_path
                "persistence false",
                "log_dest stderr",
                "log_type all",
                f"listener {port} 127.0.0.1",
                f"cafile {bundle / 'ca-chain.pem'}",
                f"certfile {broker_cert}",
                f"keyfile {broker_key}",
                "require_certificate true",
                "use_identity_as_username true",
                f"crlfile {bundle / 'crl.pem'}",
                "allow_anonymous false",
                "",
            ]
        )
    )
    broker = Broker(conf, tmp_path / "mosquitto.log", port)
    try:
        yield {"common": common, "bundle": bundle, "broker": broker, "issue": issue, "port": port}
    finally:
        broker.stop()


def test_mosquitto_accepts_issued_client_and_refuses_it_after_revocation(
    broker_setup: dict[str, object], capsys: pytest.CaptureFixture[str]
) -> None:
    common: list[str] = broker_setup["common"]  # type: ignore[assignment]
    bundle: Path = broker_setup["bundle"]  # type: ignore[assignment]
    broker: Broker = broker_setup["broker"]  # type: ignore[assignment]
    issue = broker_setup["issue"]
    port: int = broker_setup["port"]  # type: ignore[assignment]
    chain = bundle / "ca-chain.pem"

    pump_cert, pump_key, pump_serial = issue("mqtt-client", "pump", "pump-7", [])  # type: ignore[operator]
    valve_cert, valve_key, _ = issue("mqtt-client", "valve", "valve-2", [])  # type: ignore[operator]

    broker.start()
    ok, why = _connect(port, chain, pump_cert, pump_key, "pump-7")
    assert ok, f"{why}\n{broker.log.read_text()}"
    ok, why = _connect(port, chain, valve_cert, valve_key, "valve-2")
    assert ok, why
    broker.stop()

    assert main(["pki", "revoke", *common, "--serial", pump_serial, "--reason", "keyCompromise"]) == 0
    assert main(["pki", "export", "--dir", common[1], "--format", "pem-bundle", "--out", str(bundle)]) == 0
    capsys.readouterr()

    broker.start()
    ok, why = _connect(port, chain, pump_cert, pump_key, "pump-7")
    assert not ok, "revoked client still connected"
    ok_valve, why_valve = _connect(port, chain, valve_cert, valve_key, "valve-2")
    assert ok_valve, f"unrevoked client refused: {why_valve}\n{broker.log.read_text()}"
    broker.stop()
    assert "certificate verify failed" in broker.log.read_text(), why


def test_mosquitto_refuses_a_certificate_from_another_ca(
    broker_setup: dict[str, object], tmp_path: Path
) -> None:
    """Control: the broker's trust really is the exported chain, not 'any certificate'."""
    bundle: Path = broker_setup["bundle"]  # type: ignore[assignment]
    broker: Broker = broker_setup["broker"]  # type: ignore[assignment]
    port: int = broker_setup["port"]  # type: ignore[assignment]
    import datetime as dt

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pump-7")])
    now = dt.datetime.now(dt.UTC)
    self_signed = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "rogue.pem", tmp_path / "rogue.key"
    cert_path.write_bytes(self_signed.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    broker.start()
    ok, _ = _connect(port, bundle / "ca-chain.pem", cert_path, key_path, "pump-7")
    broker.stop()
    assert not ok
