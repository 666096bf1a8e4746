"""Certificates seen on the wire, with the wire↔PKI judgement, read from the sensor store.

The one reading of what :class:`api.pki.wire.CertificateObserver` records: the inventory keeps every
presented certificate per asset (``Asset.certificates[sha256]``) and the observer adds ``status``,
``findings``, ``roles``, ``sources``, ``first_seen``/``last_seen`` to that entry. ``zonewarden pki list
--observed`` prints :func:`observed_certificates` (one row per certificate and presenting IP); the web
API (``GET /api/v1/certificates/observed``) groups the same rows per certificate
(:func:`group_by_certificate`). Certificates seen by a sensor run without ``--pki-dir`` are
``not_judged``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from api.pki.ca import iso
from api.pki.wire import worst_status
from sensor.assets.inventory import Asset

NOT_JUDGED: Final = "not_judged"
ISSUED_FIELDS: Final = ("serial", "status", "profile", "not_after")


def _iso(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return iso(dt.datetime.fromtimestamp(value, dt.UTC))
    return None


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def issued_index(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """SHA-256 -> this PKI's record (serial, status, profile, notAfter), from ``CertificateRow.as_dict``."""
    return {str(row["sha256"]): {k: row[k] for k in ISSUED_FIELDS} for row in rows}


def observed_certificates(
    assets: Iterable[Asset], issued: Mapping[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    """One row per (certificate, presenting IP), sorted by subject, IP and fingerprint; ``issued``
    (from :func:`issued_index`) joins each to this PKI's record when it was issued here."""
    out: list[dict[str, Any]] = []
    for asset in assets:
        for sha, cert in asset.certificates.items():
            sources = _strings(cert.get("sources")) or ([str(cert["source"])] if cert.get("source") else [])
            out.append(
                {
                    "sha256": sha,
                    "status": str(cert.get("status") or NOT_JUDGED),
                    "findings": _strings(cert.get("findings")),
                    "ip": asset.ip,
                    "roles": _strings(cert.get("roles")),
                    "sources": sources,
                    "app_proto": cert.get("app_proto"),
                    "first_seen": _iso(cert.get("first_seen")),
                    "last_seen": _iso(cert.get("last_seen")) or _iso(asset.last_seen),
                    "subject": str(cert.get("subject", "")),
                    "issuer": str(cert.get("issuer", "")),
                    "serial": cert.get("serial"),
                    "not_after": cert.get("not_after"),
                    "self_signed": bool(cert.get("self_signed", False)),
                    "san_dns": _strings(cert.get("san_dns")),
                    "san_ips": _strings(cert.get("san_ips")),
                    "san_uris": _strings(cert.get("san_uris")),
                    "issued": issued.get(sha),
                }
            )
    out.sort(key=lambda o: (o["subject"], o["ip"], o["sha256"]))
    return out


PRESENTER_FIELDS: Final = (
    "ip",
    "status",
    "findings",
    "roles",
    "sources",
    "app_proto",
    "first_seen",
    "last_seen",
)
CERTIFICATE_FIELDS: Final = (
    "sha256",
    "subject",
    "issuer",
    "serial",
    "not_after",
    "self_signed",
    "san_dns",
    "san_ips",
    "san_uris",
    "issued",
)


def overall_status(statuses: Sequence[str]) -> str:
    """The most serious status of a certificate's presenters (``not_judged`` only when none was)."""
    judged = [s for s in statuses if s != NOT_JUDGED]
    return worst_status(judged) if judged else NOT_JUDGED


def group_by_certificate(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rows of :func:`observed_certificates` merged per certificate, each presenter listed."""
    grouped: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = grouped.get(row["sha256"])
        if entry is None:
            entry = {k: row[k] for k in CERTIFICATE_FIELDS}
            entry.update(
                presenters=[], sources=[], assets=[], findings=[], issued_here=row["issued"] is not None
            )
            grouped[row["sha256"]] = entry
        entry["presenters"].append({k: row[k] for k in PRESENTER_FIELDS})
        entry["assets"].append(row["ip"])
        entry["sources"] += [s for s in row["sources"] if s not in entry["sources"]]
        entry["findings"] += [f for f in row["findings"] if f not in entry["findings"]]
    for entry in grouped.values():
        entry["status"] = overall_status([p["status"] for p in entry["presenters"]])
    return sorted(grouped.values(), key=lambda e: (e["subject"], e["sha256"]))
