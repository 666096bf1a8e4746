"""The embedded store: one SQLite file in WAL mode (DESIGN.md §6).

Shape:

* Schema in versioned SQL files (``migrations/NNNN_name.sql``), applied in order inside one
  transaction each and recorded in ``schema_migrations``; plain SQL types so the same files run on
  PostgreSQL for a central deployment (no SQLite-only column types, no ``WITHOUT ROWID``, upserts
  written as ``INSERT ... ON CONFLICT (...) DO UPDATE``, which both engines accept). What only SQLite
  runs (JSON functions, triggers) is applied with its version, in the same transaction, from
  :data:`_SQLITE_ONLY_STEPS`: today the triggers that derive ``policy_alert_edges`` from ``alerts``.
* One writer (the sensor's :class:`~sensor.assets.observer.InventoryObserver`), batched: changes
  accumulate in memory and :meth:`Store.save` writes them in one transaction, every N events and at
  the end of input, never per event. Readers (the CLI, the web API) use their own connections: WAL lets
  them read while the writer writes.
* Durability: the inventory and graph can be rebuilt from traffic, so their batches commit with
  ``synchronous=NORMAL`` (a power cut may lose the last batch, never corrupt the file); a batch that
  carries alerts commits with ``synchronous=FULL``. ``kill -9`` loses at most the batch in progress:
  SQLite's journal makes each commit atomic.
* Idempotency: assets and edges are written as whole rows (absolute values, not increments); flow
  counters are absorbed once per ``flow_id`` (``absorbed_flows``); alerts are keyed by their
  deterministic ``alert_id`` and an upsert keeps the larger count. Replaying a capture twice, or again
  after a crash, duplicates nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from sensor.assets.graph import CommunicationGraph, EdgeStats, edge_id
from sensor.assets.inventory import Asset, Inventory, MacInfo, asset_name
from sensor.assets.labels import (
    MAX_LABELLED_ASSETS,
    AssetLabels,
    LabelError,
    check_address,
    check_name,
    check_tags,
)
from sensor.errors import UserError
from sensor.records import Alert
from sensor.store.alert_filter import AlertFilter
from sensor.store.summary_counters import PREFIX as SUMMARY_PREFIX

log = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
ALERT_STATUSES: Final = ("open", "acknowledged", "closed")
IN_CHUNK: Final = 500  # ids per "IN (...)" query (SQLite's default limit is 999 parameters)
DEFAULT_REMEMBERED_FLOWS: Final = 2_000_000
LABELS_SCHEMA_VERSION: Final = 2  # migrations/0002_asset_labels.sql
ALERT_SEQ_SCHEMA_VERSION: Final = 3  # migrations/0003_alert_sequence.sql
POLICY_ALERT_EDGES_SCHEMA_VERSION: Final = 4  # migrations/0004_policy_alert_edges.sql


def default_db_path() -> Path:
    """``$ZONEWARDEN_DATA/zonewarden.db``, else ``~/.local/share/zonewarden/zonewarden.db`` (XDG)."""
    base = os.environ.get("ZONEWARDEN_DATA")
    if base:
        return Path(base) / "zonewarden.db"
    xdg = os.environ.get("XDG_DATA_HOME")
    root = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return root / "zonewarden" / "zonewarden.db"


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, SQL) of every migration file, in version order."""
    out = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        m = _MIGRATION_NAME.match(path.name)
        if m:
            out.append((int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    return out


def split_statements(sql: str) -> list[str]:
    """Statements of a migration file: comments dropped, split on a semicolon that ends a line."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";\n") if s.strip().rstrip(";").strip()]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class Store:
    """The SQLite store. ``readonly`` opens an existing file for reading only (CLI, API)."""

    def __init__(self, path: Path | str, *, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        try:
            if readonly:
                if not self.path.is_file():
                    raise UserError(f"{self.path}: no such database (run `zonewarden replay ... --db` first)")
                self.conn = sqlite3.connect(
                    f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
                )
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA busy_timeout = 10000")
            if not readonly:
                mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    log.warning("%s: journal mode is %s, not WAL", self.path, mode)
                self.conn.execute("PRAGMA synchronous = NORMAL")
                self.migrate()
            # a read-only look at a file an older version wrote (before migration 2) has no labels
            self.has_labels = self.schema_version() >= LABELS_SCHEMA_VERSION
            self.has_alert_seq = self.schema_version() >= ALERT_SEQ_SCHEMA_VERSION
            self.has_policy_alert_edges = self.schema_version() >= POLICY_ALERT_EDGES_SCHEMA_VERSION
        except sqlite3.DatabaseError as error:
            raise UserError(f"{self.path}: not a zonewarden database ({error})") from error
        self.pending_alerts: dict[str, Alert] = {}
        # called with the alerts of each successful save, after its COMMIT: outputs deliver only
        # what is durable here (DESIGN.md §6; a crash before the commit re-creates the same ids)
        self.on_commit: list[Callable[[list[Alert]], None]] = []
        self.alerts_inserted = 0
        self.alerts_updated = 0
        self.commits = 0

    # --- schema -------------------------------------------------------------------------------

    def schema_version(self) -> int:
        try:
            row = self.conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0] or 0)

    def migrate(self) -> int:
        """Apply the migrations this file has not seen; returns the resulting schema version."""
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
        )
        for version, name, sql in migrations():
            with self._transaction(immediate=True):
                done = self.conn.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                ).fetchone()
                if done:
                    continue
                for statement in split_statements(sql):
                    self.conn.execute(statement)
                for statement in _SQLITE_ONLY_STEPS.get(version, ()):
                    self.conn.execute(statement)
                self.conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
                log.info("%s: schema migrated to version %d (%s)", self.path, version, name)
        return self.schema_version()

    @contextmanager
    def _transaction(self, immediate: bool = False) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    # --- the writer ---------------------------------------------------------------------------

    def handle(self, alert: Any) -> None:
        """Alert sink (``AlertRouter``): alerts are kept until the next :meth:`save`."""
        if isinstance(alert, Alert):
            previous = self.pending_alerts.get(alert.alert_id)
            if previous is None or alert.count >= previous.count:
                self.pending_alerts[alert.alert_id] = alert

    def known_flows(self, flow_ids: Sequence[int]) -> set[int]:
        """Which of these flows were already absorbed into an edge (by this or an earlier run)."""
        known: set[int] = set()
        for i in range(0, len(flow_ids), IN_CHUNK):
            chunk = flow_ids[i : i + IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(f"SELECT flow_id FROM absorbed_flows WHERE flow_id IN ({marks})", chunk)
            known.update(int(r[0]) for r in rows)
        return known

    def save(
        self,
        inventory: Inventory,
        graph: CommunicationGraph,
        absorbed: Sequence[tuple[int, str, float]] = (),
        counters: dict[str, int] | None = None,
        summary: dict[str, int] | None = None,
    ) -> None:
        """Write every change since the last save in one transaction, then clear the dirty sets."""
        from sensor.assets.roles import infer_roles

        alerts = list(self.pending_alerts.values())
        self.conn.execute(f"PRAGMA synchronous = {'FULL' if alerts else 'NORMAL'}")
        with self._transaction(immediate=True):
            c = self.conn
            if inventory.deleted:
                gone = [(ip,) for ip in inventory.deleted]
                c.executemany("DELETE FROM assets WHERE ip = ?", gone)
                c.executemany("DELETE FROM asset_roles WHERE ip = ?", gone)
                c.executemany("DELETE FROM asset_protocols WHERE ip = ?", gone)
            rows, roles, protos, touched = [], [], [], []
            for ip in inventory.dirty:
                asset = inventory.get(ip)
                if asset is None:
                    continue
                asset_roles = infer_roles(asset)
                rows.append(
                    (
                        ip,
                        asset.mac,
                        inventory.vendor(asset),
                        asset_name(asset),
                        inventory.behind_router(asset),
                        asset.first_seen,
                        asset.last_seen,
                        " ".join(sorted(asset.protocols)),
                        " ".join(sorted(asset_roles)),
                        _json(asset.to_record()),
                    )
                )
                touched.append((ip,))
                roles += [(ip, role, reason) for role, reason in asset_roles.items()]
                protos += [(ip, p) for p in asset.protocols]
            c.executemany(
                "INSERT INTO assets (ip, mac, vendor, name, behind_router, first_seen, last_seen, protocols,"
                " roles, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (ip) DO UPDATE SET"
                " mac = excluded.mac, vendor = excluded.vendor, name = excluded.name,"
                " behind_router = excluded.behind_router, first_seen = excluded.first_seen,"
                " last_seen = excluded.last_seen, protocols = excluded.protocols, roles = excluded.roles,"
                " detail = excluded.detail",
                rows,
            )
            c.executemany("DELETE FROM asset_roles WHERE ip = ?", touched)
            c.executemany("DELETE FROM asset_protocols WHERE ip = ?", touched)
            c.executemany("INSERT INTO asset_roles (ip, role, reason) VALUES (?, ?, ?)", roles)
            c.executemany("INSERT INTO asset_protocols (ip, protocol) VALUES (?, ?)", protos)
            c.executemany(
                "INSERT INTO macs (mac, first_seen, last_seen, ip_count, is_router, ips)"
                " VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (mac) DO UPDATE SET first_seen = excluded.first_seen,"
                " last_seen = excluded.last_seen, ip_count = excluded.ip_count,"
                " is_router = excluded.is_router, ips = excluded.ips",
                [
                    (m.mac, m.first_seen, m.last_seen, m.ip_count, int(m.is_router), " ".join(sorted(m.ips)))
                    for m in (inventory.macs.get(mac) for mac in inventory.dirty_macs)
                    if m is not None
                ],
            )
            if graph.deleted:
                c.executemany("DELETE FROM edges WHERE edge_id = ?", [(edge_id(k),) for k in graph.deleted])
            edge_rows = []
            for key in graph.dirty:
                e = graph.get(key)
                if e is not None:
                    edge_rows.append(
                        (
                            e.id,
                            e.client,
                            e.server,
                            e.protocol,
                            e.port,
                            e.transport,
                            e.packets,
                            e.bytes,
                            e.flows,
                            e.first_seen,
                            e.last_seen,
                            _json(e.to_record()["operations"]),
                        )
                    )
            c.executemany(
                "INSERT INTO edges (edge_id, client_ip, server_ip, protocol, port, transport, packets, bytes,"
                " flows, first_seen, last_seen, operations) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (edge_id) DO UPDATE SET packets = excluded.packets, bytes = excluded.bytes,"
                " flows = excluded.flows, first_seen = excluded.first_seen, last_seen = excluded.last_seen,"
                " operations = excluded.operations",
                edge_rows,
            )
            c.executemany(
                "INSERT INTO absorbed_flows (flow_id, edge_id, ts) VALUES (?, ?, ?)"
                " ON CONFLICT (flow_id) DO NOTHING",
                absorbed,
            )
            self._save_alerts(alerts)
            if summary is not None:  # the run's summary counters, replaced as a whole (summary_counters.py)
                c.execute("DELETE FROM counters WHERE name LIKE ?", (f"{SUMMARY_PREFIX}/%",))
                counters = {**(counters or {}), **summary}
            for name, value in (counters or {}).items():
                c.execute(
                    "INSERT INTO counters (name, value) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, value),
                )
        self.commits += 1
        for listener in self.on_commit:
            listener(alerts)
        inventory.dirty.clear()
        inventory.deleted.clear()
        inventory.dirty_macs.clear()
        graph.dirty.clear()
        graph.deleted.clear()
        self.pending_alerts.clear()

    def _save_alerts(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        from sensor.outputs.eve import eve_record

        ids = [a.alert_id for a in alerts]
        existing: set[str] = set()
        for i in range(0, len(ids), IN_CHUNK):
            chunk = ids[i : i + IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            existing.update(
                r[0]
                for r in self.conn.execute(f"SELECT alert_id FROM alerts WHERE alert_id IN ({marks})", chunk)
            )
        rows = []
        seq = self.last_alert_seq()
        for a in alerts:
            seq += 1
            src, sport, dst, dport = a.flow.endpoints(a.to_server) if a.flow else ("", 0, "", 0)
            rows.append(
                (
                    a.alert_id,
                    a.ts,
                    a.last_ts or a.ts,
                    a.rule,
                    a.signature,
                    a.category,
                    a.severity,
                    a.signature_id,
                    a.rev,
                    a.app_proto,
                    a.flow.flow_id if a.flow else None,
                    src,
                    sport,
                    dst,
                    dport,
                    a.src_zone,
                    a.dest_zone,
                    a.conduit,
                    " ".join(a.mitre),
                    _json(a.evidence),
                    a.count,
                    _json(eve_record(a)),
                    seq,
                )
            )
        self.conn.executemany(
            "INSERT INTO alerts (alert_id, ts, last_ts, rule, signature, category, severity, signature_id,"
            " rev, app_proto, flow_id, src_ip, src_port, dest_ip, dest_port, src_zone, dest_zone, conduit,"
            " mitre, evidence, count, eve, seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (alert_id) DO UPDATE SET"
            " count = CASE WHEN excluded.count > alerts.count THEN excluded.count ELSE alerts.count END,"
            " last_ts = CASE WHEN excluded.last_ts > alerts.last_ts"
            " THEN excluded.last_ts ELSE alerts.last_ts END,"
            " evidence = excluded.evidence, eve = excluded.eve,"
            # a new number only when the alert moved on (a replay of the same capture changes nothing)
            " seq = CASE WHEN excluded.count > alerts.count OR excluded.last_ts > alerts.last_ts"
            " THEN excluded.seq ELSE alerts.seq END",
            rows,
        )
        self.alerts_inserted += len(set(ids) - existing)
        self.alerts_updated += len(set(ids) & existing)

    def prune_absorbed_flows(self, keep: int = DEFAULT_REMEMBERED_FLOWS) -> int:
        """Forget the oldest absorbed flow ids beyond ``keep`` (a replay of captures older than that
        could count them again); returns how many were forgotten."""
        with self._transaction(immediate=True):
            row = self.conn.execute(
                "SELECT ts FROM absorbed_flows ORDER BY ts DESC LIMIT 1 OFFSET ?", (keep,)
            ).fetchone()
            if row is None:
                return 0
            cur = self.conn.execute("DELETE FROM absorbed_flows WHERE ts <= ?", (row[0],))
            return int(cur.rowcount)

    # --- loading (the writer starts from what earlier runs saved) -----------------------------

    def load_assets(self) -> list[Asset]:
        return [
            Asset.from_record(json.loads(r[0]))
            for r in self.conn.execute("SELECT detail FROM assets ORDER BY last_seen")
        ]

    def load_macs(self) -> list[MacInfo]:
        return [
            MacInfo(r[0], r[1], r[2], set(r[5].split()) if r[5] else set(), int(r[3]), bool(r[4]))
            for r in self.conn.execute(
                "SELECT mac, first_seen, last_seen, ip_count, is_router, ips FROM macs ORDER BY last_seen"
            )
        ]

    def load_edges(self) -> list[EdgeStats]:
        return [EdgeStats.from_record(self._edge_dict(r)) for r in self.conn.execute(_EDGE_SELECT)]

    def counters(self) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in self.conn.execute("SELECT name, value FROM counters ORDER BY name")}

    # --- names and tags people give assets (sensor/assets/labels.py) --------------------------

    def labels_revision(self) -> int:
        """Moves with every label change (one row: a running sensor polls it at each commit)."""
        if not self.has_labels:
            return 0
        row = self.conn.execute("SELECT value FROM counters WHERE name = 'labels.revision'").fetchone()
        return int(row[0]) if row else 0

    def load_labels(self) -> dict[str, AssetLabels]:
        """Every labelled address (bounded by ``MAX_LABELLED_ASSETS``)."""
        if not self.has_labels:
            return {}
        tags: dict[str, list[str]] = {}
        for ip, tag in self.conn.execute("SELECT ip, tag FROM asset_label_tags ORDER BY ip, tag"):
            tags.setdefault(ip, []).append(tag)
        return {
            r[0]: AssetLabels(r[0], r[1], tuple(tags.get(r[0], ())), float(r[2]), r[3])
            for r in self.conn.execute("SELECT ip, name, updated_at, updated_by FROM asset_labels")
        }

    def zone_labels_key(self) -> tuple[int, int, float]:
        """Changes whenever :meth:`zone_labels` may have changed (cheap: readers cache on it)."""
        count, newest = self.conn.execute("SELECT COUNT(*), MAX(last_seen) FROM assets").fetchone()
        return self.labels_revision(), int(count), float(newest or 0.0)

    def zone_labels(self) -> dict[str, set[str]]:
        """What a policy zone ``{asset: NAME}`` / ``{tag: TAG}`` may match, per address, as stored:
        the names and tags people gave, and the inventory's name, vendor and roles (the running
        sensor adds every identity value, see ``InventoryObserver.labels``)."""
        out: dict[str, set[str]] = {}
        for ip, name, vendor, roles in self.conn.execute("SELECT ip, name, vendor, roles FROM assets"):
            out[ip] = {v for v in (name, vendor, *str(roles or "").split()) if v}
        for ip, given in self.load_labels().items():
            out.setdefault(ip, set()).update(v for v in (given.name, *given.tags) if v)
        return out

    def get_labels(self, ip: str) -> AssetLabels | None:
        if not self.has_labels:
            return None
        row = self.conn.execute(
            "SELECT ip, name, updated_at, updated_by FROM asset_labels WHERE ip = ?", (ip,)
        ).fetchone()
        if row is None:
            return None
        rows = self.conn.execute("SELECT tag FROM asset_label_tags WHERE ip = ? ORDER BY tag", (ip,))
        tags = tuple(r[0] for r in rows)
        return AssetLabels(row[0], row[1], tags, float(row[2]), row[3])

    def _tags_of(self, ips: Sequence[str]) -> dict[str, list[str]]:
        if not self.has_labels:
            return {}
        out: dict[str, list[str]] = {}
        for i in range(0, len(ips), IN_CHUNK):
            chunk = ips[i : i + IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            for ip, tag in self.conn.execute(
                f"SELECT ip, tag FROM asset_label_tags WHERE ip IN ({marks}) ORDER BY tag", chunk
            ):
                out.setdefault(ip, []).append(tag)
        return out

    def update_labels(
        self,
        ip: str,
        *,
        by: str,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        add_tags: Iterable[str] = (),
        remove_tags: Iterable[str] = (),
        at: float | None = None,
    ) -> AssetLabels:
        """Change what people call ``ip``: ``name`` (None keeps it, "" clears it); ``tags`` replaces the
        tags, ``add_tags``/``remove_tags`` edit them. Validated (LabelError); one durable transaction
        that also bumps ``labels.revision``. Labels left empty delete the row."""
        address = check_address(ip)
        new_name = None if name is None else check_name(name)
        replace = None if tags is None else check_tags(tags)
        added = check_tags(add_tags)
        removed = set(remove_tags)
        when = time.time() if at is None else at
        self.conn.execute("PRAGMA synchronous = FULL")
        with self._transaction(immediate=True):
            current = self.get_labels(address)
            if current is None and self._count_labelled() >= MAX_LABELLED_ASSETS:
                raise LabelError(f"at most {MAX_LABELLED_ASSETS} addresses can be labelled")
            base = current or AssetLabels(address)
            final_tags = set(base.tags if replace is None else replace)
            final_tags = (final_tags | set(added)) - removed
            labels = AssetLabels(
                address,
                base.name if new_name is None else new_name,
                check_tags(final_tags),
                when,
                by[:200],
            )
            c = self.conn
            c.execute("DELETE FROM asset_label_tags WHERE ip = ?", (address,))
            if labels.empty:
                c.execute("DELETE FROM asset_labels WHERE ip = ?", (address,))
            else:
                c.execute(
                    "INSERT INTO asset_labels (ip, name, updated_at, updated_by) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (ip) DO UPDATE SET name = excluded.name,"
                    " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                    (address, labels.name, labels.updated_at, labels.updated_by),
                )
                c.executemany(
                    "INSERT INTO asset_label_tags (ip, tag) VALUES (?, ?)",
                    [(address, t) for t in labels.tags],
                )
            c.execute("UPDATE counters SET value = value + 1 WHERE name = 'labels.revision'")
        return labels

    def _count_labelled(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM asset_labels").fetchone()[0])

    # --- the reader API (CLI, web API) --------------------------------------------------------

    def list_assets(
        self,
        *,
        role: str | None = None,
        protocol: str | None = None,
        vendor: str | None = None,
        ip_prefix: str | None = None,
        tag: str | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Assets (summary columns), most recently seen first, filtered by role / protocol / vendor
        substring / IP prefix / tag. ``name`` is the name people gave the asset when there is one, else
        the inferred one (``inferred_name``); ``given_name`` and ``tags`` are the labels."""
        where, args = [], []
        if tag:
            where.append("ip IN (SELECT ip FROM asset_label_tags WHERE tag = ?)")
            args.append(tag)
        if role:
            where.append("ip IN (SELECT ip FROM asset_roles WHERE role = ?)")
            args.append(role)
        if protocol:
            where.append("ip IN (SELECT ip FROM asset_protocols WHERE protocol = ?)")
            args.append(protocol)
        if vendor:
            where.append("LOWER(vendor) LIKE ?")
            args.append(f"%{vendor.lower()}%")
        if ip_prefix:
            where.append("ip LIKE ?")
            args.append(f"{ip_prefix}%")
        sql = (
            "SELECT ip, mac, vendor, name, behind_router, first_seen, last_seen, protocols, roles FROM assets"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY last_seen DESC, ip LIMIT ? OFFSET ?"
        )
        rows = [
            {
                "ip": r[0],
                "mac": r[1],
                "vendor": r[2],
                "name": r[3],
                "behind_router": r[4],
                "first_seen": r[5],
                "last_seen": r[6],
                "protocols": r[7].split(),
                "roles": r[8].split(),
            }
            for r in self.conn.execute(sql, (*args, limit, offset))
        ]
        return self._with_labels(rows)

    def _with_labels(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        ips = [r["ip"] for r in rows]
        names: dict[str, str] = {}
        for i in range(0, len(ips) if self.has_labels else 0, IN_CHUNK):
            chunk = ips[i : i + IN_CHUNK]
            marks = ",".join("?" * len(chunk))
            found = self.conn.execute(f"SELECT ip, name FROM asset_labels WHERE ip IN ({marks})", chunk)
            names.update((str(ip), str(name)) for ip, name in found)
        tags = self._tags_of(ips)
        for r in rows:
            given = names.get(r["ip"], "")
            r["inferred_name"] = r["name"]
            r["given_name"] = given
            r["name"] = given or r["name"]
            r["tags"] = tags.get(r["ip"], [])
        return rows

    def count_assets(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM assets").fetchone()[0])

    def get_asset(self, ip: str) -> dict[str, Any] | None:
        """Everything known about one asset: summary, roles with reasons, detail, edges."""
        row = self.conn.execute(
            "SELECT ip, mac, vendor, name, behind_router, detail FROM assets WHERE ip = ?", (ip,)
        ).fetchone()
        if row is None:
            return None
        detail = json.loads(row[5])
        roles = {
            r[0]: r[1]
            for r in self.conn.execute(
                "SELECT role, reason FROM asset_roles WHERE ip = ? ORDER BY role", (ip,)
            )
        }
        labels = self.get_labels(ip) or AssetLabels(ip)
        return {
            "ip": row[0],
            "mac": row[1],
            "vendor": row[2],
            "name": labels.name or row[3],
            "inferred_name": row[3],
            "given_name": labels.name,
            "tags": list(labels.tags),
            "labels_updated_at": labels.updated_at or None,
            "labels_updated_by": labels.updated_by or None,
            "behind_router": row[4],
            "roles": roles,
            **{k: v for k, v in detail.items() if k != "ip"},
            "edges": self.list_edges(ip=ip),
        }

    def list_edges(self, *, ip: str | None = None, protocol: str | None = None) -> list[dict[str, Any]]:
        where, args = [], []
        if ip:
            where.append("(client_ip = ? OR server_ip = ?)")
            args += [ip, ip]
        if protocol:
            where.append("protocol = ?")
            args.append(protocol)
        sql = _EDGE_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY edge_id"
        return [self._edge_dict(r) for r in self.conn.execute(sql, args)]

    def list_edges_with_policy(
        self, *, ip: str | None = None, protocol: str | None = None
    ) -> list[dict[str, Any]]:
        """Edges as :meth:`list_edges`, each with ``policy``: the policy alerts raised on that
        communication (same client, server, protocol and server port), by conduit and rule.

        One query: the communications policy alerts name (``policy_alert_edges``, one row per alert and
        communication with what is shown of the alert, derived when the alert is written:
        :data:`_POLICY_ALERT_EDGES_SELECT`) grouped by client, server, port, protocol, conduit and rule,
        joined to the edges; an edge with several groups comes back as several rows, merged here. The
        grouping is one pass over an index of small rows (with ``ip``, only that address's rows are
        grouped): no alert's evidence is parsed and no alert row is read. ``policy.status``:
        ``violation`` (an alert not closed), ``closed`` (every alert closed) or ``none``. One aggregated
        policy alert can span several communications of its two hosts (policy/observer.py) and counts
        once on each of them. A communication named by a transport (a flow no dissector claimed) is also
        the edge of the same hosts, transport and port that tshark named with ``--deep``
        (:data:`_TRANSPORT_MATCHES_EDGE`), never a native dissector's edge.
        """
        if not self.has_policy_alert_edges:
            raise UserError(f"{self.path}: written by an older version; open it read-write once to upgrade")
        where, args, of_address = [], [], ""
        if ip:
            # a group joins an edge of the same two hosts: only the address's groups are needed
            of_address = " WHERE client_ip = ? OR server_ip = ?"
            where.append("(e.client_ip = ? OR e.server_ip = ?)")
            args += [ip, ip, ip, ip]
        if protocol:
            where.append("e.protocol = ?")
            args.append(protocol)
        sql = (
            "SELECT e.edge_id, e.client_ip, e.server_ip, e.protocol, e.port, e.transport, e.packets, e.bytes,"
            " e.flows, e.first_seen, e.last_seen, e.operations,"
            " p.conduit, p.rule, p.alerts, p.hits, p.still_open, p.last_ts FROM edges e LEFT JOIN ("
            "SELECT client_ip, server_ip, port, protocol, conduit, rule, COUNT(*) AS alerts,"
            " SUM(count) AS hits, SUM(CASE WHEN status = 'closed' THEN 0 ELSE 1 END) AS still_open,"
            f" MAX(last_ts) AS last_ts FROM policy_alert_edges{of_address}"
            # the column order of the index policy_alert_edges_marks: grouped as it is read, no sort
            " GROUP BY client_ip, server_ip, port, protocol, conduit, rule) p"
            " ON p.client_ip = e.client_ip AND p.server_ip = e.server_ip AND p.port = e.port"
            f" AND (p.protocol = e.protocol OR {_TRANSPORT_MATCHES_EDGE})"
            + (" WHERE " + " AND ".join(where) if where else "")
            # (p.protocol last: a tshark-named edge can carry one rule as its transport and by its name)
            + " ORDER BY e.edge_id, p.conduit, p.rule, p.protocol"
        )
        return self._edges_with_policy(self.conn.execute(sql, args))

    @classmethod
    def _edges_with_policy(cls, rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
        """Rows of (edge columns, conduit, rule, alerts, hits, still open, last_ts), ordered by edge, merged
        into one dict per edge with its ``policy`` (see :meth:`list_edges_with_policy`)."""
        out: list[dict[str, Any]] = []
        for r in rows:
            if not out or out[-1]["id"] != r[0]:
                out.append({**cls._edge_dict(r[:12]), "policy": {"status": "none", "alerts": []}})
            if r[13] is None:  # no policy alert on this edge
                continue
            policy = out[-1]["policy"]
            policy["alerts"].append(
                {
                    "conduit": r[12],
                    "rule": r[13],
                    "alerts": int(r[14]),
                    "count": int(r[15] or 0),
                    "open": int(r[16] or 0),
                    "last_ts": float(r[17]),
                }
            )
            if int(r[16] or 0):
                policy["status"] = "violation"
            elif policy["status"] == "none":
                policy["status"] = "closed"
        return out

    def count_edges(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM edges").fetchone()[0])

    @staticmethod
    def _edge_dict(r: Sequence[Any]) -> dict[str, Any]:
        return {
            "id": r[0],
            "client": r[1],
            "server": r[2],
            "protocol": r[3],
            "port": r[4],
            "transport": r[5],
            "packets": r[6],
            "bytes": r[7],
            "flows": r[8],
            "first_seen": r[9],
            "last_seen": r[10],
            "operations": json.loads(r[11]),
        }

    def graph(self) -> CommunicationGraph:
        """The saved communication graph (every asset a node, every edge with its statistics)."""
        return self._graph_of(self.load_edges())

    def topology(self) -> CommunicationGraph:
        """The saved graph's shape alone: the same nodes and edges as :meth:`graph`, without the
        statistics and operations it parses (a path search needs none: less than half the cost)."""
        rows = self.conn.execute(
            "SELECT client_ip, server_ip, protocol, port, transport, first_seen, last_seen FROM edges"
        )
        return self._graph_of([EdgeStats(*row) for row in rows])

    def _graph_of(self, edges: list[EdgeStats]) -> CommunicationGraph:
        g = CommunicationGraph(max_edges=0)
        g.load(edges)
        for (ip,) in self.conn.execute("SELECT ip FROM assets"):
            g.add_node(ip)
        return g

    def list_alerts(
        self,
        selection: AlertFilter | None = None,
        *,
        status: str | None = None,
        category: str | None = None,
        rule: str | None = None,
        since: float | None = None,
        limit: int = 100,
        offset: int = 0,
        oldest_change_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Alerts matching ``selection`` (or the keyword filters), newest first by packet time, or in
        the store's insertion order with ``oldest_change_first`` (what the alert stream follows)."""
        if selection is None:
            selection = AlertFilter(status=status, category=category, rule=rule, since=since)
        where, args = self._alert_where(selection)
        order = " ORDER BY seq, alert_id" if oldest_change_first else " ORDER BY ts DESC, alert_id"
        sql = f"SELECT {self._alert_columns()} FROM alerts{where}{order} LIMIT ? OFFSET ?"
        return [self._alert_dict(r) for r in self.conn.execute(sql, (*args, limit, offset))]

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            f"SELECT {self._alert_columns()} FROM alerts WHERE alert_id = ?", (alert_id,)
        ).fetchone()
        return self._alert_dict(row) if row else None

    def count_alerts(self, selection: AlertFilter | None = None) -> int:
        where, args = self._alert_where(selection or AlertFilter())
        return int(self.conn.execute(f"SELECT COUNT(*) FROM alerts{where}", args).fetchone()[0])

    def last_alert_seq(self) -> int:
        """The newest point of the alerts' insertion order (0: none yet, or a store before version 3)."""
        if not self.has_alert_seq:
            return 0
        return int(self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM alerts").fetchone()[0])

    def _alert_where(self, selection: AlertFilter) -> tuple[str, list[Any]]:
        if selection.after_seq is not None and not self.has_alert_seq:
            raise UserError(f"{self.path}: written by an older version; open it read-write once to upgrade")
        return selection.where()

    def _alert_columns(self) -> str:
        return _ALERT_COLUMNS + (", seq" if self.has_alert_seq else ", 0")

    def ack_alert(self, alert_id: str, by: str, at: float | None = None, note: str | None = None) -> bool:
        """Mark an open alert acknowledged; False when there is no such alert or it is closed."""
        return self._set_status(alert_id, "acknowledged", by, at, note, ("open",))

    def close_alert(self, alert_id: str, by: str, at: float | None = None, note: str | None = None) -> bool:
        return self._set_status(alert_id, "closed", by, at, note, ("open", "acknowledged"))

    def _set_status(
        self, alert_id: str, status: str, by: str, at: float | None, note: str | None, allowed: Iterable[str]
    ) -> bool:
        when = time.time() if at is None else at
        prefix = "acked" if status == "acknowledged" else "closed"
        marks = ",".join("?" * len(tuple(allowed)))
        self.conn.execute("PRAGMA synchronous = FULL")
        with self._transaction(immediate=True):
            # a triage change is a change of the alert: the stream sends it again (a new sequence number)
            cur = self.conn.execute(
                f"UPDATE alerts SET status = ?, {prefix}_at = ?, {prefix}_by = ?, note = COALESCE(?, note),"
                " seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM alerts)"
                f" WHERE alert_id = ? AND status IN ({marks})",
                (status, when, by, note, alert_id, *allowed),
            )
        return bool(cur.rowcount)

    @staticmethod
    def _alert_dict(r: Sequence[Any]) -> dict[str, Any]:
        out = dict(zip(_ALERT_KEYS, r, strict=True))
        out["evidence"] = json.loads(out["evidence"])
        out["eve"] = json.loads(out["eve"])
        out["mitre"] = out["mitre"].split()
        return out


_EDGE_SELECT: Final = (
    "SELECT edge_id, client_ip, server_ip, protocol, port, transport, packets, bytes, flows, first_seen,"
    " last_seen, operations FROM edges"
)
# The communications policy alerts name, one row each, as the inventory names edges: the one the alert's
# row names (its app_proto, else, for a flow no dissector claimed, the transport its evidence records:
# policy/evaluate.py; the server port) and every object of its evidence's ``edges`` (policy/observer.py:
# an aggregated alert spanning several communications of its two hosts); each with what the map shows of
# the alert. A protocol is a JSON string and a port a JSON integer, as the sensor writes them; an alert
# whose evidence is not JSON or records none names what its row says, or nothing. UNION: named by the row
# and listed in the evidence, a communication is one row (the alert counts once on it). Only JSON objects
# are read, whatever order SQLite evaluates the terms in (the CASEs). ``{alerts}``: a FROM item named
# ``a`` with the alerts table's columns.
_POLICY_ALERT_EDGES_SELECT: Final = (
    "SELECT * FROM ("
    "SELECT a.alert_id, a.src_ip, a.dest_ip, CASE WHEN a.app_proto <> '' THEN a.app_proto"
    " WHEN json_valid(a.evidence) THEN CASE json_type(a.evidence, '$.transport')"
    " WHEN 'text' THEN json_extract(a.evidence, '$.transport') END END AS protocol,"
    " a.dest_port, a.conduit, a.rule, a.count, a.status, a.last_ts FROM {alerts}"
    " UNION SELECT a.alert_id, a.src_ip, a.dest_ip, json_extract(x.value, '$.protocol'),"
    " json_extract(x.value, '$.port'), a.conduit, a.rule, a.count, a.status, a.last_ts"
    " FROM {alerts}, json_each(CASE WHEN instr(a.evidence, '\"edges\"') > 0"
    " AND json_valid(a.evidence) THEN a.evidence END, '$.edges') x"
    " WHERE CASE WHEN x.type = 'object' THEN json_type(x.value, '$.protocol') = 'text'"
    " AND json_type(x.value, '$.port') = 'integer' END"
    ") WHERE protocol IS NOT NULL"
)
_INSERT_POLICY_ALERT_EDGES: Final = (
    "INSERT INTO policy_alert_edges (alert_id, client_ip, server_ip, protocol, port, conduit, rule, count,"
    " status, last_ts) "
)
# The columns of an alert its rows derive from.
_POLICY_ALERT_EDGE_SOURCES: Final = (
    "alert_id",
    "category",
    "src_ip",
    "dest_ip",
    "app_proto",
    "dest_port",
    "evidence",
    "conduit",
    "rule",
    "count",
    "status",
    "last_ts",
)
_NEW_POLICY_ALERT_EDGES: Final = _INSERT_POLICY_ALERT_EDGES + _POLICY_ALERT_EDGES_SELECT.format(
    alerts=f"(SELECT {', '.join(f'NEW.{c} AS {c}' for c in _POLICY_ALERT_EDGE_SOURCES)}"
    " WHERE NEW.category = 'policy') a"
)
# ``policy_alert_edges`` is kept by the database itself, in the statement that writes the alert: whoever
# writes it (this store's upsert or triage, an older version of the sensor on an upgraded file, a person
# with sqlite3), an alert's rows are what its row and evidence say now. An upsert that changes none of
# those columns (a replay) touches no row. A change of the rule is a new schema version that replaces
# these triggers and refills the table.
_POLICY_ALERT_EDGES_TRIGGERS: Final = (
    "CREATE TRIGGER policy_alert_edges_insert AFTER INSERT ON alerts WHEN NEW.category = 'policy' BEGIN"
    f" DELETE FROM policy_alert_edges WHERE alert_id = NEW.alert_id; {_NEW_POLICY_ALERT_EDGES}; END",
    f"CREATE TRIGGER policy_alert_edges_update AFTER UPDATE OF {', '.join(_POLICY_ALERT_EDGE_SOURCES)}"
    f" ON alerts WHEN {' OR '.join(f'NEW.{c} IS NOT OLD.{c}' for c in _POLICY_ALERT_EDGE_SOURCES)} BEGIN"
    f" DELETE FROM policy_alert_edges WHERE alert_id = OLD.alert_id; {_NEW_POLICY_ALERT_EDGES}; END",
    "CREATE TRIGGER policy_alert_edges_delete AFTER DELETE ON alerts BEGIN"
    " DELETE FROM policy_alert_edges WHERE alert_id = OLD.alert_id; END",
)
# What a schema version needs beyond its portable migration file, run after that file's statements in
# its transaction (a PostgreSQL deployment needs its own equivalent).
_SQLITE_ONLY_STEPS: Final[dict[int, tuple[str, ...]]] = {
    POLICY_ALERT_EDGES_SCHEMA_VERSION: (
        *_POLICY_ALERT_EDGES_TRIGGERS,
        # the policy alerts stored before this version
        _INSERT_POLICY_ALERT_EDGES
        + _POLICY_ALERT_EDGES_SELECT.format(alerts="(SELECT * FROM alerts WHERE category = 'policy') a"),
    ),
}
# A communication named by a transport (``tcp``/``udp``: a flow no native dissector claimed) is also the
# edge of the same hosts and port that ``--deep`` renamed after the protocol tshark identified
# (InventoryObserver.absorb_other_protocols): that edge keeps its transport, and tshark never names a
# native protocol (sensor/deep.py DEFAULT_SKIP), so any edge whose protocol is not one of the native
# dissectors' names (sensor/runtime.py default_dissectors) is tshark's. Matching here rather than
# rewriting the stored alert's app_proto when the flow is named: an alert is the record EVE and the
# outputs already carried (its alert_id and body do not change afterwards), one alert can span several
# flows, and live --deep names a flow before or after its alert is raised; the match holds in either
# order and for databases written before. ``p``: the grouped policy_alert_edges, ``e``: edges.
_TRANSPORT_MATCHES_EDGE: Final = (
    "(p.protocol = e.transport AND e.protocol NOT IN ('modbus', 'opcua', 'mqtt', 'tls'))"
)
_ALERT_COLUMNS: Final = (
    "alert_id, ts, last_ts, rule, signature, category, severity, signature_id, rev, app_proto, flow_id, "
    "src_ip, src_port, dest_ip, dest_port, src_zone, dest_zone, conduit, mitre, evidence, count, status, "
    "acked_at, acked_by, closed_at, closed_by, note, eve"
)
_ALERT_KEYS: Final = (*_ALERT_COLUMNS.split(", "), "seq")
