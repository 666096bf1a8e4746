"""Wire ↔ PKI: every certificate seen on the wire judged against the certificates the CA issued.

DESIGN.md §1: ``certificates seen -> api/pki (inventory) -> Alert``. The :class:`CertificateObserver`
is a pipeline observer (runtime.py builds it after the inventory when ``--pki-dir`` is given). For each
leaf certificate a device presents (``sensor.records.CertificateObservation``, chain index 0: OPC UA
OpenSecureChannel SenderCertificate, CreateSession, EndpointDescription; TLS Certificate messages) it
decides one *ownership* and any number of *findings*:

==================== ========================================================================= ========
status               meaning                                                                   severity
==================== ========================================================================= ========
managed              issued by our CA and in the PKI store (by DER SHA-256): recorded, no alert  -
unmanaged            issuer unknown to our CA (or claims our CA's name, signature does not fit)  3 (1)
self_signed          subject = issuer and the signature verifies with its own key               3
revoked_in_use       issued by us, revoked in the store, still presented                        1
expired_in_use       notAfter before the PACKET time of the observation                         2
expiring_soon        notAfter within ``expiring_days`` (default 30) of the packet time          3
san_uri_mismatch     OPC UA: the ApplicationUri the application announces is not a SAN URI      2
renewed_old_in_use   issued by us, superseded by a renewal, still presented after it was issued 3
==================== ========================================================================= ========

Each status but ``managed`` is an alert with rule ``cert:<status>`` (category ``certificate``).
Alerts aggregate: one per (status, certificate SHA-256, presenter IP) per ``window`` seconds of packet
time, with ``count`` observations between ``ts`` and ``last_ts`` (a client reconnecting every ten
seconds with an expired certificate is one alert an hour, not 360).

Matching (RFC 5280 §6 in its simplest form, one level): a certificate whose DER SHA-256 is in the PKI
store is ours. Otherwise its issuer name is compared with our CA certificates' subjects and, when one
matches, the signature is checked with that CA's public key (``Certificate.verify_directly_issued_by``).
A certificate that names our CA as issuer but does not verify, or verifies but is missing from the store
(the CA key signed something the CA did not record), is ``unmanaged`` at severity 1: both mean someone
other than this PKI is minting certificates in its name.

Time: expiry and renewal are compared with packet time (a replay of last year's capture says what was
true then). Revocation is current knowledge: a certificate revoked today that a capture shows in use is
reported whenever the capture was taken, because the device most likely still holds it; the evidence
says whether the observation came before or after the revocation.

The ApplicationUri comes from the OPC UA events of the same application: the CreateSession request's
ClientDescription (the client of that connection), the CreateSession response's and GetEndpoints'
EndpointDescriptions (the server; OPC 10000-4 §5.6.2, §5.4.4, §7.14). Certificates and URIs arrive in
either order (the CreateSession request's certificate is observed before the paired message is
complete), so both sides are remembered for a while, bounded.

Recording: the inventory already keeps every presented certificate per asset
(``Asset.certificates[sha256]``, saved in the sensor store); this observer adds its judgement to that
entry (``status``, ``findings``, ``roles``, ``sources``, ``first_seen``, ``last_seen``, ``serial``,
``issued_serial``) and marks the asset dirty, so the store's next batch saves it and
``zonewarden pki list --observed`` and the API read it from there. Nothing is stored twice.

The PKI directory is read without the CA passphrase (:func:`read_pki_directory`): the two CA
certificates and the store, opened read-only. A live sensor re-reads it when the store changes (checked
at most every ``refresh_interval`` seconds of packet time), so a revocation made through the API or the
CLI is seen within a minute.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from sensor.assets.identity import clean_text, endpoint_host, opcua_application_identity
from sensor.errors import UserError
from sensor.limits import DEFAULT_LIMITS, Limits
from sensor.records import Alert, AppEvent, CertificateObservation, FlowRef, stable_signature_id

log = logging.getLogger(__name__)

DEFAULT_EXPIRING_DAYS: Final = 30
DEFAULT_WINDOW: Final = 3600.0  # seconds of packet time per aggregated alert
DEFAULT_REFRESH_INTERVAL: Final = 60.0  # seconds of packet time between checks of the PKI store
MAX_VERDICTS: Final = 4096  # distinct certificates whose static verdict is cached (LRU)
MAX_PENDING_ALERTS: Final = 10_000
MAX_TRACKED_APPS: Final = 4096  # OPC UA applications whose URI / certificates are remembered (LRU)
MAX_CERTS_PER_APP: Final = 8
MAX_OBSERVED: Final = 100_000  # distinct (certificate, presenter IP) pairs counted in the summary
MAX_REVERSE_FLOWS: Final = 4096
MAX_SOURCES: Final = 4
CA_PROFILES: Final = frozenset({"root-ca", "issuing-ca"})

MANAGED: Final = "managed"
UNMANAGED: Final = "unmanaged"
SELF_SIGNED: Final = "self_signed"
REVOKED: Final = "revoked_in_use"
EXPIRED: Final = "expired_in_use"
EXPIRING: Final = "expiring_soon"
URI_MISMATCH: Final = "san_uri_mismatch"
RENEWED: Final = "renewed_old_in_use"

# The status shown for a certificate is its most serious finding, else its ownership.
STATUS_ORDER: Final = (REVOKED, EXPIRED, URI_MISMATCH, RENEWED, SELF_SIGNED, UNMANAGED, EXPIRING, MANAGED)
STATUSES: Final = frozenset(STATUS_ORDER)
SEVERITY: Final[dict[str, int]] = {
    REVOKED: 1,
    EXPIRED: 2,
    URI_MISMATCH: 2,
    RENEWED: 3,
    SELF_SIGNED: 3,
    UNMANAGED: 3,
    EXPIRING: 3,
}

ROOT_CERT, ISSUING_CERT, DATABASE = "root-ca.pem", "issuing-ca.pem", "pki.sqlite"


def rule_of(status: str) -> str:
    return f"cert:{status}"


def worst_status(statuses: Iterable[str]) -> str:
    present = set(statuses)
    return next((s for s in STATUS_ORDER if s in present), MANAGED)


def iso_to_epoch(text: str | None) -> float | None:
    """ISO 8601 (as ``CertificateInfo`` and the PKI store write it) to seconds since the epoch."""
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


# --- what the PKI issued ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """One row of the PKI store, as much of it as the wire side needs (no DER, no private material)."""

    id: int
    issuer: str
    serial: str  # lower-case hex, no leading zeros (same form as CertificateInfo.serial_hex)
    profile: str
    subject: str
    sans: tuple[str, ...]
    not_after: str
    status: str  # "valid" | "revoked"
    revoked_at: str | None
    revocation_reason: str | None
    renewal_of: int | None
    sha256: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "status": self.status,
            "profile": self.profile,
            "subject": self.subject,
            "not_after": self.not_after,
            "revoked_at": self.revoked_at,
            "revocation_reason": self.revocation_reason,
        }


class PkiSnapshot:
    """The CA certificates and the issued certificates at one moment, indexed for O(1) lookups."""

    def __init__(
        self, ca_certs: Sequence[x509.Certificate], issued: Iterable[IssuedCertificate], origin: str = ""
    ) -> None:
        self.ca_certs = list(ca_certs)
        self.origin = origin
        self.issued = list(issued)
        self.by_sha256 = {row.sha256: row for row in self.issued}
        self.by_issuer_serial = {(row.issuer, row.serial): row for row in self.issued}
        self.successor = _successors(self.issued)

    def __len__(self) -> int:
        return len(self.issued)


def _successors(rows: Sequence[IssuedCertificate]) -> dict[int, IssuedCertificate]:
    """Row id -> the newest certificate that supersedes it.

    A renewal (``renewal_of``) supersedes its predecessor; so does any later certificate with the same
    subject, profile and SANs (``pki renew`` keeps all three; a re-issue for the same device does too).
    """
    out: dict[int, IssuedCertificate] = {}
    by_id = {row.id: row for row in rows}
    latest: dict[tuple[str, str, tuple[str, ...]], IssuedCertificate] = {}
    for row in sorted(rows, key=lambda r: r.id):
        if row.profile in CA_PROFILES:
            continue
        if row.renewal_of is not None and row.renewal_of in by_id:
            out[row.renewal_of] = row
        key = (row.subject, row.profile, row.sans)
        previous = latest.get(key)
        if previous is not None:
            out.setdefault(previous.id, row)
        latest[key] = row
    # A chain of renewals: the newest one is what the device should present now.
    for old_id, new in list(out.items()):
        seen = {old_id}
        while new.id in out and new.id not in seen:
            seen.add(new.id)
            new = out[new.id]
        out[old_id] = new
    return out


_ISSUED_COLUMNS = (
    "id, issuer, serial, profile, subject, sans, not_after, status, revoked_at, revocation_reason,"
    " renewal_of, sha256, created_at"
)


def _issued_row(values: Sequence[Any]) -> IssuedCertificate:
    import json

    sans = json.loads(values[5]) if values[5] else []
    return IssuedCertificate(
        id=int(values[0]),
        issuer=str(values[1]),
        serial=str(values[2]),
        profile=str(values[3]),
        subject=str(values[4]),
        sans=tuple(str(s) for s in sans),
        not_after=str(values[6]),
        status=str(values[7]),
        revoked_at=values[8],
        revocation_reason=values[9],
        renewal_of=int(values[10]) if values[10] is not None else None,
        sha256=str(values[11]),
        created_at=str(values[12]),
    )


def pki_state_stamp(directory: Path) -> tuple[tuple[str, int, int], ...]:
    """(name, mtime_ns, size) of the files whose change means the snapshot is stale."""
    out = []
    for name in (DATABASE, f"{DATABASE}-wal", ISSUING_CERT, ROOT_CERT):
        try:
            info = (directory / name).stat()
        except OSError:
            continue
        out.append((name, info.st_mtime_ns, info.st_size))
    return tuple(out)


def read_pki_directory(directory: Path) -> PkiSnapshot:
    """Read a PKI directory's public side without a passphrase: CA certificates and the store, read-only.

    Nothing is written (no audit record, no schema, no WAL checkpoint): the sensor may run as a user that
    can read the directory but not change it. Raises :class:`UserError` with one line when it cannot.
    """
    if not (directory / "config.json").is_file():
        raise UserError(f"{directory} is not a zonewarden PKI directory (run zonewarden pki init)")
    try:
        ca_certs = [
            x509.load_pem_x509_certificate((directory / name).read_bytes())
            for name in (ISSUING_CERT, ROOT_CERT)
        ]
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the CA certificates in {directory}: {exc}") from None
    database = directory / DATABASE
    if not database.is_file():
        raise UserError(f"{database}: no PKI store")
    try:
        rows = _read_rows(f"file:{database}?mode=ro")
    except sqlite3.OperationalError:
        # A WAL database opened read-only needs its -shm file; when the directory is not writable
        # for us and no writer is running, read the file as an immutable snapshot instead.
        try:
            rows = _read_rows(f"file:{database}?immutable=1")
        except sqlite3.Error as exc:
            raise UserError(f"cannot read {database}: {exc}") from None
    except sqlite3.Error as exc:
        raise UserError(f"cannot read {database}: {exc}") from None
    return PkiSnapshot(ca_certs, rows, origin=str(directory))


def _read_rows(uri: str) -> list[IssuedCertificate]:
    conn = sqlite3.connect(uri, uri=True, timeout=10.0, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = ON")
        return [
            _issued_row(r)
            for r in conn.execute(f"SELECT {_ISSUED_COLUMNS} FROM certificates ORDER BY id").fetchall()
        ]
    finally:
        conn.close()


class PkiDirectoryWatcher:
    """Re-reads a PKI directory when its store or CA files change (for a long-running sensor)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.stamp = pki_state_stamp(directory)

    def load(self) -> PkiSnapshot:
        snapshot = read_pki_directory(self.directory)
        # After the read: opening a WAL database may itself create its -wal file.
        self.stamp = pki_state_stamp(self.directory)
        return snapshot

    def reload_if_changed(self) -> PkiSnapshot | None:
        stamp = pki_state_stamp(self.directory)
        if stamp == self.stamp:
            return None
        try:
            return self.load()
        except UserError as exc:  # a half-written store: keep the old snapshot, try again later
            log.warning("PKI directory changed but cannot be re-read: %s", exc)
            self.stamp = stamp
            return None


# --- judging one certificate ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaticVerdict:
    """What a certificate is, independent of when and by whom it is presented (cached per SHA-256)."""

    ownership: str  # MANAGED | UNMANAGED | SELF_SIGNED
    reason: str  # how the ownership was decided
    issued: IssuedCertificate | None  # the store's row when managed
    successor: IssuedCertificate | None  # the certificate that supersedes it, when managed and renewed
    not_after: float | None  # epoch seconds
    severity: int = 3  # of the ownership alert

    @property
    def forged(self) -> bool:
        return self.ownership == UNMANAGED and self.severity == 1


def judge_certificate(
    der: bytes, sha256: str, self_signed: bool, not_after: str, pki: PkiSnapshot
) -> StaticVerdict:
    """Ownership of one certificate against the PKI (by SHA-256, then issuer name + signature)."""
    expiry = iso_to_epoch(not_after)
    row = pki.by_sha256.get(sha256)
    if row is not None:
        return StaticVerdict(MANAGED, "sha256", row, pki.successor.get(row.id), expiry)
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return StaticVerdict(UNMANAGED, "unparsable", None, None, expiry)
    claims_ours = False
    for ca in pki.ca_certs:
        if cert.issuer != ca.subject:
            continue
        claims_ours = True
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        # Our CA's key signed it, yet the store never recorded it: issued outside this PKI.
        return StaticVerdict(UNMANAGED, "signed_by_our_ca_not_in_store", None, None, expiry, severity=1)
    if claims_ours:
        return StaticVerdict(UNMANAGED, "names_our_ca_signature_invalid", None, None, expiry, severity=1)
    if self_signed:
        return StaticVerdict(SELF_SIGNED, "self_signed", None, None, expiry)
    return StaticVerdict(UNMANAGED, "issuer_unknown", None, None, expiry)


def lifecycle_findings(
    verdict: StaticVerdict, ts: float, expiring_days: float
) -> list[tuple[str, dict[str, Any]]]:
    """Findings that depend on the packet time: revoked, expired, expiring, superseded (with evidence)."""
    out: list[tuple[str, dict[str, Any]]] = []
    row = verdict.issued
    if row is not None and row.status == "revoked":
        revoked_at = iso_to_epoch(row.revoked_at)
        out.append(
            (
                REVOKED,
                {
                    "revoked_at": row.revoked_at,
                    "revocation_reason": row.revocation_reason,
                    "seen_after_revocation": revoked_at is not None and ts >= revoked_at,
                },
            )
        )
    if verdict.not_after is not None:
        left = verdict.not_after - ts
        if left < 0:
            out.append((EXPIRED, {"expired_days_ago": round(-left / 86400, 1)}))
        elif left <= expiring_days * 86400:
            out.append((EXPIRING, {"days_left": round(left / 86400, 1), "threshold_days": expiring_days}))
    successor = verdict.successor
    if row is not None and successor is not None:
        renewed_at = iso_to_epoch(successor.created_at)
        if renewed_at is None or ts >= renewed_at:
            out.append(
                (
                    RENEWED,
                    {
                        "superseded_by_serial": successor.serial,
                        "superseded_by_sha256": successor.sha256,
                        "renewed_at": successor.created_at,
                    },
                )
            )
    return out


# --- the observer -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    """One aggregated alert being counted."""

    status: str
    first: CertificateObservation
    ip: str
    first_ts: float
    last_ts: float
    extra: dict[str, Any]
    count: int = 1


@dataclass(slots=True)
class _Observed:
    """A certificate as presented by one IP: what the summary and the inventory entry say."""

    ownership: str
    findings: set[str] = field(default_factory=set)

    @property
    def status(self) -> str:
        return worst_status({self.ownership, *self.findings})


AppKey = tuple[Any, ...]


class CertificateObserver:
    """Pipeline observer: judges presented certificates against the PKI and raises ``cert:*`` alerts."""

    def __init__(
        self,
        publish: Callable[[Alert], None],
        pki: PkiSnapshot,
        *,
        expiring_days: float = DEFAULT_EXPIRING_DAYS,
        window: float = DEFAULT_WINDOW,
        inventory: Any | None = None,
        watcher: PkiDirectoryWatcher | None = None,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.publish = publish
        self.pki = pki
        self.expiring_days = expiring_days
        self.window = window
        self.inventory = inventory  # sensor.assets.inventory.Inventory, to record the judgement
        self.watcher = watcher
        self.refresh_interval = refresh_interval
        self.max_chars = limits.max_field_chars
        self.observations = 0
        self.chain_certificates = 0
        self.alerts_published = 0
        self.reloads = 0
        self._verdicts: OrderedDict[str, StaticVerdict] = OrderedDict()
        self._pending: OrderedDict[tuple[str, str, str], _Pending] = OrderedDict()
        self._oldest_start = float("inf")
        self._next_refresh = 0.0
        self._observed: dict[tuple[str, str], _Observed] = {}
        self._observed_dropped = 0
        # OPC UA: ApplicationUri and presented certificates per application (see module docstring)
        self._uris: OrderedDict[AppKey, str] = OrderedDict()
        self._app_certs: OrderedDict[AppKey, dict[str, CertificateObservation]] = OrderedDict()
        self._reverse_flows: OrderedDict[int, None] = OrderedDict()

    @classmethod
    def from_directory(
        cls, publish: Callable[[Alert], None], directory: Path, **kwargs: Any
    ) -> CertificateObserver:
        watcher = PkiDirectoryWatcher(directory)
        return cls(publish, watcher.load(), watcher=watcher, **kwargs)

    # --- the observer protocol ----------------------------------------------------------------

    def handle(self, event: AppEvent) -> None:
        kind = type(event)
        if kind is CertificateObservation:
            assert isinstance(event, CertificateObservation)
            self._on_certificate(event)
        elif event.app_proto == "opcua":
            self._on_opcua(event)

    def flush(self, now: float) -> None:
        """Publish every pending aggregate (end of input, or periodically on a live sensor)."""
        for key in list(self._pending):
            self._emit(self._pending.pop(key))
        self._oldest_start = float("inf")

    # --- certificates ---------------------------------------------------------------------------

    def _presenter_ip(self, flow: FlowRef, presenter_is_server: bool) -> str:
        # OPC UA reverse connect (OPC 10000-6 §7.1.3): the UA server opened the TCP connection.
        server_side = presenter_is_server != (flow.flow_id in self._reverse_flows)
        return flow.server_ip if server_side else flow.client_ip

    def _presented_by_flow_server(self, obs: CertificateObservation) -> bool:
        reverse = obs.flow is not None and obs.flow.flow_id in self._reverse_flows
        return obs.presenter_is_server != reverse

    def _verdict(self, obs: CertificateObservation) -> StaticVerdict:
        sha = obs.cert.sha256
        verdict = self._verdicts.get(sha)
        if verdict is not None:
            self._verdicts.move_to_end(sha)
            return verdict
        verdict = judge_certificate(obs.der, sha, obs.cert.self_signed, obs.cert.not_after, self.pki)
        self._verdicts[sha] = verdict
        if len(self._verdicts) > MAX_VERDICTS:
            self._verdicts.popitem(last=False)
        return verdict

    def _on_certificate(self, obs: CertificateObservation) -> None:
        if obs.chain_index != 0:
            self.chain_certificates += 1  # intermediates/roots: the leaf is what identifies the device
            return
        flow = obs.flow
        if flow is None:
            return
        ts = obs.ts
        if self.watcher is not None and ts >= self._next_refresh:
            self._next_refresh = ts + self.refresh_interval
            self._refresh()
        if ts > self._oldest_start + self.window:
            self._expire(ts)
        self.observations += 1
        ip = self._presenter_ip(flow, obs.presenter_is_server)
        verdict = self._verdict(obs)
        statuses: list[tuple[str, dict[str, Any]]] = []
        if verdict.ownership != MANAGED:
            statuses.append((verdict.ownership, {"reason": verdict.reason}))
        statuses.extend(lifecycle_findings(verdict, ts, self.expiring_days))
        if obs.app_proto == "opcua":
            mismatch = self._track_opcua_certificate(obs)
            if mismatch is not None:
                statuses.append(mismatch)
        record = self._record(obs, ip, verdict, [s for s, _ in statuses])
        for status, extra in statuses:
            self._aggregate(status, obs, ip, ts, extra)
        self._annotate(obs, ip, verdict, record, ts)

    def _record(
        self, obs: CertificateObservation, ip: str, verdict: StaticVerdict, findings: list[str]
    ) -> _Observed:
        key = (obs.cert.sha256, ip)
        record = self._observed.get(key)
        if record is None:
            record = _Observed(verdict.ownership)
            if len(self._observed) < MAX_OBSERVED:
                self._observed[key] = record
            else:
                self._observed_dropped += 1
        record.ownership = verdict.ownership
        # Time-dependent findings are replaced by the latest observation's; a URI mismatch stays.
        record.findings = {f for f in record.findings if f == URI_MISMATCH} | {
            f for f in findings if f not in (UNMANAGED, SELF_SIGNED)
        }
        return record

    def _annotate(
        self, obs: CertificateObservation, ip: str, verdict: StaticVerdict, record: _Observed, ts: float
    ) -> None:
        """Add the judgement to the inventory's entry for this certificate (saved with the asset)."""
        if self.inventory is None:
            return
        asset = self.inventory.get(ip)
        if asset is None:
            return
        entry = asset.certificates.get(obs.cert.sha256)
        if entry is None:  # the inventory dropped it (per-asset cap)
            return
        role = "server" if obs.presenter_is_server else "client"
        roles = entry.get("roles")
        roles = list(roles) if isinstance(roles, list) else []
        if role not in roles:
            roles.append(role)
        sources = entry.get("sources")
        sources = list(sources) if isinstance(sources, list) else []
        if obs.source not in sources and len(sources) < MAX_SOURCES:
            sources.append(obs.source)
        first = entry.get("first_seen")
        entry.update(
            status=record.status,
            ownership=record.ownership,
            findings=sorted(record.findings),
            roles=sorted(roles),
            sources=sources,
            app_proto=obs.app_proto,
            serial=obs.cert.serial_hex,
            issued_serial=verdict.issued.serial if verdict.issued is not None else None,
            first_seen=min(float(first), ts) if isinstance(first, int | float) else ts,
            last_seen=max(float(entry.get("last_seen") or 0.0), ts),
            judged_against=self.pki.origin,
        )
        self.inventory.dirty.add(ip)

    def _refresh(self) -> None:
        assert self.watcher is not None
        snapshot = self.watcher.reload_if_changed()
        if snapshot is not None:
            self.pki = snapshot
            self._verdicts.clear()
            self.reloads += 1
            log.info("PKI directory re-read: %d issued certificates", len(snapshot))

    # --- OPC UA ApplicationUri ------------------------------------------------------------------

    def _on_opcua(self, event: AppEvent) -> None:
        flow = event.flow
        if flow is None:
            return
        if getattr(event, "reverse_connect", False) and flow.flow_id not in self._reverse_flows:
            self._reverse_flows[flow.flow_id] = None
            if len(self._reverse_flows) > MAX_REVERSE_FLOWS:
                self._reverse_flows.popitem(last=False)
        service = getattr(event, "service", "")
        if service not in ("CreateSession", "GetEndpoints"):
            return
        request = getattr(event, "request", None)
        response = getattr(event, "response", None)
        if service == "CreateSession" and isinstance(request, dict):
            uri = opcua_application_identity(request.get("client_description")).get("opcua.application_uri")
            if uri:
                self._announce(event, self._client_key(flow), uri)
        endpoints_key = "server_endpoints" if service == "CreateSession" else "endpoints"
        endpoints = response.get(endpoints_key) if isinstance(response, dict) else None
        if not isinstance(endpoints, list):
            return
        server_ip = self._presenter_ip(flow, True)
        for endpoint in endpoints[:64]:
            if not isinstance(endpoint, dict):
                continue
            url = endpoint.get("endpoint_url")
            if service == "GetEndpoints" and isinstance(url, str) and not _names_host(url, server_ip):
                continue  # a discovery server describing another server
            uri = opcua_application_identity(endpoint.get("server")).get("opcua.application_uri")
            if uri:
                for key in self._server_keys(flow):
                    self._announce(event, key, uri)
                return

    def _client_key(self, flow: FlowRef) -> AppKey:
        return ("client", flow.flow_id)

    def _server_keys(self, flow: FlowRef) -> list[AppKey]:
        """The server application: on this connection, and by its listening endpoint across connections."""
        keys: list[AppKey] = [("server", flow.flow_id)]
        if flow.flow_id not in self._reverse_flows:
            keys.append(("endpoint", flow.server_ip, flow.server_port))
        return keys

    def _app_keys(self, obs: CertificateObservation) -> list[AppKey]:
        assert obs.flow is not None
        return self._server_keys(obs.flow) if obs.presenter_is_server else [self._client_key(obs.flow)]

    def _remember(self, table: OrderedDict[AppKey, Any], key: AppKey, value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        if len(table) > MAX_TRACKED_APPS:
            table.popitem(last=False)

    def _track_opcua_certificate(self, obs: CertificateObservation) -> tuple[str, dict[str, Any]] | None:
        """Remember the certificate for its application; a mismatch finding if its URI is known."""
        uri: str | None = None
        for key in self._app_keys(obs):
            certs = self._app_certs.get(key)
            if certs is None:
                certs = {}
                self._remember(self._app_certs, key, certs)
            if obs.cert.sha256 not in certs and len(certs) >= MAX_CERTS_PER_APP:
                certs.pop(next(iter(certs)))
            certs[obs.cert.sha256] = obs
            uri = uri or self._uris.get(key)
        return _uri_mismatch(obs, uri) if uri else None

    def _announce(self, event: AppEvent, key: AppKey, uri: str) -> None:
        """An application announced its ApplicationUri: check the certificates it presented."""
        if self._uris.get(key) == uri:
            return
        self._remember(self._uris, key, uri)
        for obs in list(self._app_certs.get(key, {}).values()):
            mismatch = _uri_mismatch(obs, uri)
            if mismatch is None:
                continue
            assert obs.flow is not None
            ip = self._presenter_ip(obs.flow, obs.presenter_is_server)
            verdict = self._verdict(obs)
            record = self._observed.get((obs.cert.sha256, ip))
            if record is not None:
                record.findings.add(URI_MISMATCH)
                self._annotate(obs, ip, verdict, record, obs.ts)
            self._aggregate(URI_MISMATCH, obs, ip, event.ts, mismatch[1])

    # --- aggregation ----------------------------------------------------------------------------

    def _aggregate(
        self, status: str, obs: CertificateObservation, ip: str, ts: float, extra: dict[str, Any]
    ) -> None:
        key = (status, obs.cert.sha256, ip)
        pending = self._pending.get(key)
        if pending is not None and ts - pending.first_ts > self.window:
            self._emit(self._pending.pop(key))
            pending = None
        if pending is None:
            if len(self._pending) >= MAX_PENDING_ALERTS:
                self._emit(self._pending.popitem(last=False)[1])
            self._pending[key] = _Pending(status, obs, ip, ts, ts, dict(extra))
            self._oldest_start = min(self._oldest_start, ts)
            return
        pending.count += 1
        pending.last_ts = max(pending.last_ts, ts)
        pending.extra.update(extra)  # the latest days_left, revocation state...

    def _expire(self, now: float) -> None:
        due = [k for k, p in self._pending.items() if now - p.first_ts > self.window]
        for key in due:
            self._emit(self._pending.pop(key))
        self._oldest_start = min((p.first_ts for p in self._pending.values()), default=float("inf"))

    def _emit(self, pending: _Pending) -> None:
        obs = pending.first
        cert = obs.cert
        status = pending.status
        verdict = self._verdict(obs)
        role = "server" if obs.presenter_is_server else "client"
        text = self._text
        subject = text(cert.subject) or "(empty subject)"
        evidence: dict[str, Any] = {
            "status": status,
            "asset": pending.ip,
            "presenter": role,
            "source": obs.source,
            "app_proto": obs.app_proto,
            "subject": text(cert.subject),
            "issuer": text(cert.issuer),
            "serial": cert.serial_hex,
            "sha256": cert.sha256,
            "not_before": cert.not_before,
            "not_after": cert.not_after,
            "san_uris": [text(u) for u in cert.san_uris[:8]],
            "ownership": verdict.ownership,
            "pki": self.pki.origin,
            **pending.extra,
        }
        if verdict.issued is not None:
            evidence["issued_serial"] = verdict.issued.serial
            evidence["profile"] = verdict.issued.profile
        where = f"presented by {pending.ip} as {obs.app_proto or 'tls'} {role} ({obs.source})"
        signature = _signature(status, subject, text(cert.issuer), cert, pending.extra, where)
        severity = verdict.severity if status == UNMANAGED else SEVERITY[status]
        self.alerts_published += 1
        self.publish(
            Alert(
                ts=pending.first_ts,
                flow=obs.flow,
                rule=rule_of(status),
                signature=signature,
                category="certificate",
                severity=severity,
                signature_id=stable_signature_id(rule_of(status)),
                to_server=not self._presented_by_flow_server(obs),  # src = the presenter
                app_proto=obs.app_proto,
                mitre=("T0849",) if verdict.forged or status == URI_MISMATCH else (),  # Masquerading
                evidence=evidence,
                count=pending.count,
                last_ts=pending.last_ts,
            )
        )

    def _text(self, value: str) -> str:
        return clean_text(value, self.max_chars)

    # --- reports --------------------------------------------------------------------------------

    def observed(self) -> dict[tuple[str, str], str]:
        """(certificate SHA-256, presenter IP) -> status, for everything judged so far."""
        return {key: record.status for key, record in self._observed.items()}

    def section(self) -> dict[str, Any]:
        """The ``certificates`` block of the replay summary."""
        by_status = Counter(record.status for record in self._observed.values())
        return {
            "pki_dir": self.pki.origin,
            "issued": len(self.pki),
            "observations": self.observations,
            "chain_certificates": self.chain_certificates,
            "observed": len(self._observed),
            "observed_dropped": self._observed_dropped,
            "by_status": dict(sorted(by_status.items())),
            "alerts": self.alerts_published,
            "pki_reloads": self.reloads,
            "expiring_days": self.expiring_days,
        }


def _names_host(url: str, ip: str) -> bool:
    """Whether an endpoint URL names this IP (a host name cannot be checked passively: taken as yes)."""
    import ipaddress

    host = endpoint_host(url)
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(ip)
    except ValueError:
        return True


def _uri_mismatch(obs: CertificateObservation, uri: str) -> tuple[str, dict[str, Any]] | None:
    """OPC 10000-4 §6.1.3 / 10000-6 §6.2.2: the ApplicationUri must be a URI in subjectAltName."""
    if uri in obs.cert.san_uris:
        return None
    return URI_MISMATCH, {"application_uri": uri}


def _signature(status: str, subject: str, issuer: str, cert: Any, extra: dict[str, Any], where: str) -> str:
    if status == REVOKED:
        return (
            f"Revoked certificate still in use: {subject} serial {cert.serial_hex} (revoked "
            f"{extra.get('revoked_at')}, {extra.get('revocation_reason')}) {where}"
        )
    if status == EXPIRED:
        return f"Expired certificate still in use: {subject} expired {cert.not_after} {where}"
    if status == EXPIRING:
        return (
            f"Certificate expiring in {extra.get('days_left')} days: {subject} (not after {cert.not_after}) "
            f"{where}"
        )
    if status == URI_MISMATCH:
        return (
            f"Certificate SAN URI mismatch: ApplicationUri {extra.get('application_uri')!r} not in "
            f"{list(cert.san_uris)[:4]} of {subject} {where}"
        )
    if status == RENEWED:
        return (
            f"Old certificate still in use after renewal: {subject} serial {cert.serial_hex} superseded by "
            f"{extra.get('superseded_by_serial')} {where}"
        )
    if status == SELF_SIGNED:
        return f"Self-signed certificate: {subject} {where}"
    reason = extra.get("reason")
    if reason == "signed_by_our_ca_not_in_store":
        return f"Certificate signed by our CA but never recorded by it: {subject} {where}"
    if reason == "names_our_ca_signature_invalid":
        return (
            f"Forged certificate: {subject} names our CA {issuer} but its signature does not verify {where}"
        )
    return f"Unmanaged certificate: {subject} issued by {issuer} (not our CA) {where}"


__all__ = [
    "DEFAULT_EXPIRING_DAYS",
    "STATUSES",
    "CertificateObserver",
    "IssuedCertificate",
    "PkiDirectoryWatcher",
    "PkiSnapshot",
    "StaticVerdict",
    "judge_certificate",
    "lifecycle_findings",
    "read_pki_directory",
    "rule_of",
]
