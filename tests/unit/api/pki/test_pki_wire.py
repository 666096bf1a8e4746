"""api/pki/wire.py: certificates seen on the wire judged against the certificates the CA issued.

Every certificate here is real: issued by a CA made with ``init_ca`` (issuance, renewal, revocation
through ``CertificateAuthority``), or built with ``cryptography`` for the outsiders (another CA, a
self-signed device, a forgery naming our CA). Observations are the records the dissectors emit.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pki_helpers import ACTOR, PASSPHRASE, dns, open_ca, uri

from api.pki.ca import CaDirectory, CertificateAuthority, init_ca
from api.pki.wire import (
    CertificateObserver,
    PkiDirectoryWatcher,
    PkiSnapshot,
    read_pki_directory,
)
from sensor.assets.observer import InventoryObserver
from sensor.certs import parse_certificate
from sensor.dissectors.opcua.events import OpcUaMessage
from sensor.errors import UserError
from sensor.records import Alert, CertificateObservation, FlowRef

CLIENT_IP, SERVER_IP = "10.10.1.20", "10.10.2.5"
DAY = 86400.0


# --- helpers ----------------------------------------------------------------------------------------


def flow(flow_id: int = 1, client: str = CLIENT_IP, server: str = SERVER_IP, port: int = 4840) -> FlowRef:
    return FlowRef(flow_id, "1:x", "tcp", client, 50000 + flow_id, server, port)


def observation(
    cert: x509.Certificate,
    ts: float,
    *,
    server: bool = False,
    source: str = "opcua.opn",
    app_proto: str = "opcua",
    on: FlowRef | None = None,
    chain_index: int = 0,
) -> CertificateObservation:
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertificateObservation(
        ts, on or flow(), source, server, parse_certificate(der), der, app_proto, chain_index
    )


def create_session(ts: float, client_uri: str, on: FlowRef | None = None) -> OpcUaMessage:
    """The OpcUaMessage the dissector emits for a CreateSession pair (only the fields read here)."""
    return OpcUaMessage(
        ts=ts,
        flow=on or flow(),
        to_server=True,
        message_type="MSG",
        secure_channel_id=1,
        request_id=2,
        service="CreateSession",
        request_type_id=461,
        response_type_id=464,
        request_handle=1,
        status="Good",
        security_policy="http://opcfoundation.org/UA/SecurityPolicy#None",
        security_mode="None",
        request={"client_description": {"application_uri": client_uri, "application_type": "Client"}},
        response={"server_endpoints": []},
        chunks=(("MSG", 2),),
    )


def issue(
    ca: CertificateAuthority, cn: str, app_uri: str, days: int | None = None
) -> tuple[x509.Certificate, str]:
    issued = ca.issue_generated(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]),
        [uri(app_uri), dns("plc.example")],
        "opcua-app",
        key_kind="ecdsa-p256",
        days=days,
    )
    return issued.certificate, issued.serial


def outsider(
    cn: str,
    *,
    issuer: x509.Name | None = None,
    days: tuple[float, float] = (-1, 365),
    self_signed: bool = False,
) -> x509.Certificate:
    """A certificate our CA did not issue: from a private CA, self-signed, or naming ``issuer``."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer = key if self_signed else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(
            subject
            if self_signed
            else issuer or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Vendor CA")])
        )
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days[0]))
        .not_valid_after(now + dt.timedelta(days=days[1]))
        .add_extension(x509.SubjectAlternativeName([uri(f"urn:{cn}")]), critical=False)
        .sign(signer, hashes.SHA256())
    )


class Harness:
    """An observer on a PKI directory, with the inventory in front of it as runtime.py wires them."""

    def __init__(self, directory: Path, **kwargs: Any) -> None:
        self.alerts: list[Alert] = []
        self.inventory = InventoryObserver(self.alerts.append)
        self.observer = CertificateObserver.from_directory(
            self.alerts.append, directory, inventory=self.inventory.inventory, **kwargs
        )

    def feed(self, *events: Any) -> list[Alert]:
        for event in events:
            self.inventory.handle(event)
            self.observer.handle(event)
        self.observer.flush(0.0)
        return self.cert_alerts()

    def cert_alerts(self) -> list[Alert]:
        return [a for a in self.alerts if a.category == "certificate"]

    def entry(self, ip: str, cert: x509.Certificate) -> dict[str, Any]:
        asset = self.inventory.inventory.get(ip)
        assert asset is not None
        sha = parse_certificate(cert.public_bytes(serialization.Encoding.DER)).sha256
        return asset.certificates[sha]


@pytest.fixture
def fresh_ca(tmp_path: Path) -> Iterator[tuple[Path, CertificateAuthority]]:
    """A CA of its own per test: revocations and renewals must not leak between tests."""
    directory = tmp_path / "ca"
    init_ca(directory, PASSPHRASE, ACTOR, key_kind="ecdsa-p256").close()
    cadir, authority = open_ca(directory)
    try:
        yield directory, authority
    finally:
        cadir.close()


def now() -> float:
    return time.time() + 2  # packet time just after the issuance's created_at (whole seconds)


# --- ownership --------------------------------------------------------------------------------------


def test_managed_certificate_raises_nothing_and_is_recorded_with_where_it_was_seen(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    cert, serial = issue(ca, "plc-1", "urn:plant:plc-1")
    h = Harness(directory)
    t = now()
    alerts = h.feed(observation(cert, t), observation(cert, t + 5))
    assert alerts == []
    section = h.observer.section()
    assert section["by_status"] == {"managed": 1} and section["observations"] == 2
    entry = h.entry(CLIENT_IP, cert)
    assert entry["status"] == "managed" and entry["issued_serial"] == serial
    assert entry["roles"] == ["client"] and entry["sources"] == ["opcua.opn"]
    assert entry["first_seen"] == t and entry["last_seen"] == t + 5
    assert CLIENT_IP in h.inventory.inventory.dirty


def test_certificate_from_another_ca_is_unmanaged(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, _ = fresh_ca
    cert = outsider("vendor-plc")
    alerts = Harness(directory).feed(observation(cert, now(), server=True, on=flow()))
    assert [a.rule for a in alerts] == ["cert:unmanaged"]
    alert = alerts[0]
    assert alert.severity == 3 and alert.evidence["reason"] == "issuer_unknown"
    assert alert.evidence["asset"] == SERVER_IP and alert.evidence["presenter"] == "server"
    assert alert.flow is not None and alert.flow.endpoints(alert.to_server)[0] == SERVER_IP  # src = presenter
    assert alert.evidence["serial"] == format(cert.serial_number, "x")


def test_self_signed_device_certificate(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, _ = fresh_ca
    alerts = Harness(directory).feed(observation(outsider("hmi-7", self_signed=True), now()))
    assert [a.rule for a in alerts] == ["cert:self_signed"]
    assert alerts[0].evidence["subject"] == "CN=hmi-7"


def test_certificate_naming_our_ca_with_a_foreign_signature_is_a_forgery(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, _ = fresh_ca
    ours = read_pki_directory(directory).ca_certs[0].subject
    alerts = Harness(directory).feed(observation(outsider("fake-plc", issuer=ours), now()))
    assert [a.rule for a in alerts] == ["cert:unmanaged"]
    assert alerts[0].severity == 1 and alerts[0].evidence["reason"] == "names_our_ca_signature_invalid"
    assert alerts[0].mitre == ("T0849",)


def test_certificate_signed_by_our_ca_key_but_missing_from_the_store(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    cert, serial = issue(ca, "ghost", "urn:plant:ghost")
    ca.store.conn.execute("DELETE FROM certificates WHERE serial = ?", (serial,))  # as if never recorded
    alerts = Harness(directory).feed(observation(cert, now()))
    assert [a.rule for a in alerts] == ["cert:unmanaged"]
    assert alerts[0].severity == 1 and alerts[0].evidence["reason"] == "signed_by_our_ca_not_in_store"


# --- lifecycle --------------------------------------------------------------------------------------


def test_revoked_certificate_still_in_use(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    cert, serial = issue(ca, "plc-2", "urn:plant:plc-2")
    ca.revoke(serial, "keyCompromise")
    h = Harness(directory)
    alerts = h.feed(observation(cert, now()))
    assert [a.rule for a in alerts] == ["cert:revoked_in_use"]
    evidence = alerts[0].evidence
    assert alerts[0].severity == 1
    assert evidence["revocation_reason"] == "keyCompromise" and evidence["seen_after_revocation"] is True
    assert evidence["issued_serial"] == serial
    assert h.entry(CLIENT_IP, cert)["status"] == "revoked_in_use"


def test_revocation_is_current_knowledge_even_for_an_older_capture(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    cert, serial = issue(ca, "plc-3", "urn:plant:plc-3")
    ca.revoke(serial)
    alerts = Harness(directory).feed(observation(cert, now() - 3600))
    assert [a.rule for a in alerts] == ["cert:revoked_in_use"]
    assert alerts[0].evidence["seen_after_revocation"] is False


def test_expired_is_judged_at_packet_time(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    cert, _ = issue(ca, "plc-4", "urn:plant:plc-4", days=40)
    expiry = cert.not_valid_after_utc.timestamp()
    h = Harness(directory)
    assert h.feed(observation(cert, expiry - 60 * DAY)) == []  # 60 days left: fine
    alerts = h.feed(observation(cert, expiry + 2 * DAY, on=flow(2)))
    assert [a.rule for a in alerts] == ["cert:expired_in_use"]
    assert alerts[0].severity == 2 and alerts[0].evidence["expired_days_ago"] == 2.0


def test_built_expired_certificate_from_a_vendor_ca(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, _ = fresh_ca
    cert = outsider("old-rtu", days=(-400, -35))
    alerts = Harness(directory).feed(
        observation(cert, now(), source="tls.server", app_proto="tls", server=True)
    )
    assert sorted(a.rule for a in alerts) == ["cert:expired_in_use", "cert:unmanaged"]


def test_expiring_in_ten_days(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    cert, _ = issue(ca, "plc-5", "urn:plant:plc-5", days=10)
    alerts = Harness(directory).feed(observation(cert, now()))
    assert [a.rule for a in alerts] == ["cert:expiring_soon"]
    assert 9.9 <= alerts[0].evidence["days_left"] <= 10.0 and alerts[0].evidence["threshold_days"] == 30
    # the threshold is configurable: 7 days says nothing yet
    assert Harness(directory, expiring_days=7).feed(observation(cert, now())) == []


def test_old_certificate_presented_after_a_renewal(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    old, old_serial = issue(ca, "plc-6", "urn:plant:plc-6")
    before_renewal = now() - 10
    time.sleep(1.1)  # created_at has whole seconds: the renewal is strictly later
    renewed = ca.renew(int(old_serial, 16), generate_key_kind="ecdsa-p256")
    h = Harness(directory)
    assert h.feed(observation(old, before_renewal)) == []  # before the renewal: nothing to say
    alerts = h.feed(observation(old, now(), on=flow(2)))
    assert [a.rule for a in alerts] == ["cert:renewed_old_in_use"]
    assert alerts[0].evidence["superseded_by_serial"] == renewed.serial
    # the new certificate is simply managed
    assert h.feed(observation(renewed.certificate, now(), on=flow(3))) == alerts


def test_renewal_chain_points_at_the_newest_certificate(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    first, serial = issue(ca, "plc-7", "urn:plant:plc-7")
    second = ca.renew(int(serial, 16), generate_key_kind="ecdsa-p256")
    third = ca.renew(int(second.serial, 16), same_key=True)
    snapshot = read_pki_directory(directory)
    row = snapshot.by_sha256[parse_certificate(first.public_bytes(serialization.Encoding.DER)).sha256]
    assert snapshot.successor[row.id].serial == third.serial
    middle = snapshot.by_sha256[
        parse_certificate(second.certificate.public_bytes(serialization.Encoding.DER)).sha256
    ]
    assert snapshot.successor[middle.id].serial == third.serial
    assert all(r.id not in snapshot.successor for r in snapshot.issued if r.serial == third.serial)


# --- SAN URI against the announced ApplicationUri ---------------------------------------------------


@pytest.mark.parametrize("uri_first", [False, True], ids=["certificate-first", "uri-first"])
def test_san_uri_mismatch_with_the_create_session_application_uri(fresh_ca, uri_first: bool) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    cert, _ = issue(ca, "scada-client", "urn:plant:scada")
    t = now()
    events: list[Any] = [
        observation(cert, t, source="opcua.create_session"),
        create_session(t + 1, "urn:plant:impostor"),
    ]
    h = Harness(directory)
    alerts = h.feed(*(reversed(events) if uri_first else events))
    assert [a.rule for a in alerts] == ["cert:san_uri_mismatch"]
    assert alerts[0].evidence["application_uri"] == "urn:plant:impostor"
    assert alerts[0].evidence["san_uris"] == ["urn:plant:scada"]
    assert h.entry(CLIENT_IP, cert)["status"] == "san_uri_mismatch"


def test_matching_application_uri_and_other_connections_say_nothing(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    cert, _ = issue(ca, "scada-client", "urn:plant:scada")
    t = now()
    h = Harness(directory)
    assert h.feed(observation(cert, t), create_session(t + 1, "urn:plant:scada")) == []
    # another client application on the same host announcing another URI on another connection
    assert h.feed(create_session(t + 2, "urn:plant:historian", on=flow(9))) == []


# --- aggregation, bounds, reload ---------------------------------------------------------------------


def test_one_alert_per_status_certificate_and_presenter_per_window(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, _ = fresh_ca
    cert = outsider("chatty-plc")
    h = Harness(directory, window=600)
    t = now()
    events = [observation(cert, t + 10 * i, on=flow(i)) for i in range(6)]
    events.append(observation(cert, t + 30, on=flow(50, client="10.10.1.99")))  # another presenter
    events.append(observation(cert, t + 700, on=flow(51)))  # the next window
    alerts = h.feed(*events)
    counts = sorted((a.evidence["asset"], a.count, a.ts) for a in alerts)
    assert counts == [(CLIENT_IP, 1, t + 700), (CLIENT_IP, 6, t), ("10.10.1.99", 1, t + 30)]
    first = next(a for a in alerts if a.count == 6)
    assert first.last_ts == t + 50
    assert len({a.alert_id for a in alerts}) == 3


def test_chain_certificates_are_not_judged_as_devices(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, _ = fresh_ca
    h = Harness(directory)
    assert h.feed(observation(outsider("Vendor CA", self_signed=True), now(), chain_index=1)) == []
    assert h.observer.section()["chain_certificates"] == 1


def test_a_live_sensor_sees_a_revocation_made_after_it_started(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    cert, serial = issue(ca, "plc-8", "urn:plant:plc-8")
    h = Harness(directory, refresh_interval=60)
    t = now()
    assert h.feed(observation(cert, t)) == []
    ca.revoke(serial)
    assert h.feed(observation(cert, t + 10, on=flow(2))) == []  # not re-read yet (packet time)
    alerts = h.feed(observation(cert, t + 61, on=flow(3)))
    assert [a.rule for a in alerts] == ["cert:revoked_in_use"]
    assert h.observer.section()["pki_reloads"] == 1


# --- the read-only opener ---------------------------------------------------------------------------


def test_pki_directory_is_read_without_passphrase_and_without_writing(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    directory, ca = fresh_ca
    issue(ca, "plc-9", "urn:plant:plc-9")
    db = directory / "pki.sqlite"
    audit_before = sqlite3.connect(db).execute("SELECT COUNT(*) FROM audit_log").fetchone()[0]
    snapshot = read_pki_directory(directory)
    assert isinstance(snapshot, PkiSnapshot) and len(snapshot) == 3  # root, issuing, plc-9
    assert [c.subject for c in snapshot.ca_certs] == [
        CaDirectory(directory, ACTOR).issuing_cert.subject,
        CaDirectory(directory, ACTOR).root_cert.subject,
    ]
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == audit_before
    watcher = PkiDirectoryWatcher(directory)
    watcher.load()
    assert watcher.reload_if_changed() is None


def test_not_a_pki_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a zonewarden PKI directory"):
        read_pki_directory(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(UserError, match="cannot read the CA certificates"):
        read_pki_directory(tmp_path)


def test_replay_with_a_bad_pki_dir_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zw_paths import PCAPS

    from sensor.cli import main

    code = main(["replay", "-q", str(PCAPS / "opcua-asyncua-none.pcap"), "--pki-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "not a zonewarden PKI directory" in err


def test_a_flood_of_distinct_certificates_stays_bounded(fresh_ca, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import api.pki.wire as wire

    monkeypatch.setattr(wire, "MAX_VERDICTS", 8)
    monkeypatch.setattr(wire, "MAX_PENDING_ALERTS", 5)
    monkeypatch.setattr(wire, "MAX_TRACKED_APPS", 6)
    directory, _ = fresh_ca
    h = Harness(directory)
    t = now()
    for i in range(20):
        obs = observation(outsider(f"flood-{i}"), t + i, on=flow(i))
        h.inventory.handle(obs)
        h.observer.handle(obs)
        assert len(h.observer._verdicts) <= 8 and len(h.observer._pending) <= 5
        assert len(h.observer._app_certs) <= 6
    h.observer.flush(t + 20)
    # nothing lost: every certificate got its alert, the early ones published when the table was full
    assert sorted(a.evidence["subject"] for a in h.cert_alerts()) == sorted(
        f"CN=flood-{i}" for i in range(20)
    )


def test_reverse_connect_presenter_is_the_ua_server_that_dialled_out(fresh_ca) -> None:  # type: ignore[no-untyped-def]
    from sensor.dissectors.opcua.events import OpcUaTransport

    directory, _ = fresh_ca
    # OPC 10000-6 §7.1.3: the UA server (10.10.2.5) opened the TCP connection to the client (10.10.1.20)
    dialled = FlowRef(7, "1:x", "tcp", SERVER_IP, 40001, CLIENT_IP, 4841)
    rhe = OpcUaTransport(now(), dialled, True, "RHE", {"server_uri": "urn:s"}, reverse_connect=True)
    alerts = Harness(directory).feed(rhe, observation(outsider("rc-server"), now(), server=True, on=dialled))
    assert [a.evidence["asset"] for a in alerts] == [SERVER_IP]
    assert alerts[0].flow is not None and alerts[0].flow.endpoints(alerts[0].to_server)[0] == SERVER_IP
