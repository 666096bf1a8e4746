"""``zonewarden baseline``: show, diff, accept an alert into, or reset a learned baseline.

* ``zonewarden baseline show --baseline FILE [--json]``
* ``zonewarden baseline diff --baseline FILE [--against OTHER | --revision N]``: the changes between
  OTHER (older) and FILE, or those recorded for revision N, or for the last revision.
* ``zonewarden baseline accept ALERT_ID --baseline FILE (--eve FILE | --db PATH)``: fold the facts of
  an anomaly alert's evidence into the baseline, so the same behaviour no longer raises.
* ``zonewarden baseline reset --baseline FILE [--asset IP [--relearn SECONDS]]``: forget one asset
  (and learn it again for SECONDS of packet time in the next run), or everything.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from sensor.detect.baseline import Baseline, diff, fact_from_json
from sensor.errors import UserError

EXIT_OK = 0


def _load(path: str) -> Baseline:
    p = Path(path)
    if not p.exists():
        raise UserError(
            f"{p}: no such baseline (learn one with: zonewarden replay --learn-for S --baseline {p} PCAP)"
        )
    return Baseline.load(p)


def cmd_show(args: argparse.Namespace) -> int:
    b = _load(args.baseline)
    if args.json:
        sys.stdout.write(json.dumps(b.to_json(), indent=1, sort_keys=True) + "\n")
        return EXIT_OK
    print(f"baseline {args.baseline}: revision {b.revision}, learned from packet time {b.created:.6f}")
    for section, n in b.counts().items():
        if n:
            print(f"  {section}: {n}")
    if b.relearn:
        print("  relearn: " + ", ".join(f"{ip} for {s:g} s" for ip, s in sorted(b.relearn.items())))
    snapshot = b.snapshot()
    for section, content in snapshot.items():
        if not content:
            continue
        print(f"\n[{section}]")
        rows = content.items() if isinstance(content, dict) else ((None, r) for r in content)
        for key, row in rows:
            fields = " ".join(f"{k}={v}" for k, v in row.items()) if isinstance(row, dict) else str(row)
            print(f"  {key + ' ' if key else ''}{fields}")
    return EXIT_OK


def _print_changes(changes: dict[str, Any]) -> None:
    for part, sign in (("added", "+"), ("removed", "-"), ("changed", "~")):
        for line in changes.get(part) or []:
            print(f"{sign} {line}")


def cmd_diff(args: argparse.Namespace) -> int:
    b = _load(args.baseline)
    if args.against:
        _print_changes(diff(_load(args.against), b))
        return EXIT_OK
    if not b.history:
        print("no revisions recorded")
        return EXIT_OK
    wanted = args.revision if args.revision is not None else b.history[-1]["revision"]
    for entry in b.history:
        if entry["revision"] == wanted:
            print(
                f"revision {wanted}: {entry['action']} at packet time {entry['at']:.6f} "
                f"{entry.get('detail', '')}"
            )
            _print_changes(entry)
            for part in ("added", "removed", "changed"):
                shown, total = len(entry.get(part) or []), entry.get(f"{part}_count", 0)
                if total > shown:
                    print(f"  ... {total - shown} more {part}")
            return EXIT_OK
    raise UserError(f"revision {wanted} is not in the baseline's history")


def find_alert(alert_id: str, eve: str | None, db: str | None) -> dict[str, Any]:
    """The alert (``rule`` and ``evidence``) from an EVE file or the alert store."""
    if db:
        from sensor.store.sqlite import Store

        store = Store(Path(db), readonly=True)
        try:
            found = store.get_alert(alert_id)
        finally:
            close = getattr(store, "close", None)
            if callable(close):
                close()
        if found is None:
            raise UserError(f"alert {alert_id} is not in {db}")
        return {"rule": found["rule"], "evidence": found["evidence"], "count": found.get("count", 1)}
    if not eve:
        raise UserError("say where the alert is: --eve FILE or --db PATH")
    try:
        with open(eve, encoding="utf-8") as fh:
            for line in fh:
                if alert_id not in line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                zw = rec.get("zonewarden") or {}
                if rec.get("event_type") == "alert" and zw.get("id") == alert_id:
                    return {
                        "rule": zw.get("rule", ""),
                        "evidence": zw.get("evidence") or {},
                        "count": zw.get("count", 1),
                    }
    except OSError as exc:
        raise UserError(f"{eve}: {exc.strerror or exc}") from exc
    raise UserError(f"alert {alert_id} is not in {eve}")


def accept_alert(b: Baseline, alert_id: str, alert: dict[str, Any]) -> tuple[int, int, bool]:
    """Fold the facts of an anomaly alert (``find_alert`` shape) into ``b`` and commit a revision.

    Returns (facts new, facts carried, whether a revision was committed); UserError when the alert
    is not an anomaly or carries no usable facts. Used by the CLI and the web API.
    """
    if not str(alert["rule"]).startswith("anomaly:"):
        raise UserError(f"alert {alert_id} is a {alert['rule']} alert, not an anomaly: nothing to learn")
    evidence = alert["evidence"] if isinstance(alert.get("evidence"), dict) else {}
    facts = evidence.get("baseline") or []
    if not facts or not isinstance(facts, list):
        raise UserError(f"alert {alert_id} carries no baseline facts to accept")
    added = 0
    for raw in facts:
        try:
            added += b.add(fact_from_json(raw))
        except (ValueError, TypeError, IndexError) as exc:
            raise UserError(f"alert {alert_id}: {exc}") from exc
    at = float(evidence.get("last_ts") or b.updated or 0.0)
    committed = b.commit("accept", at, f"accepted alert {alert_id} ({alert['rule']})")
    return added, len(facts), committed


def cmd_accept(args: argparse.Namespace) -> int:
    path = Path(args.baseline)
    b = _load(args.baseline)
    alert = find_alert(args.alert_id, args.eve, args.db)
    added, total, committed = accept_alert(b, args.alert_id, alert)
    if committed:
        b.save(path)
    print(
        f"accepted {alert['rule']} alert {args.alert_id}: {added} of {total} facts new; revision {b.revision}"
    )
    return EXIT_OK


def reset_baseline(b: Baseline, asset: str | None = None, relearn: float | None = None) -> tuple[int, str]:
    """Forget one asset (learning it again for ``relearn`` seconds) or everything, in place, and commit.

    Returns (entries removed, what was done). Used by the CLI and the web API.
    """
    if asset:
        try:
            ip = str(ipaddress.ip_address(asset))
        except ValueError as exc:
            raise UserError(f"--asset {asset!r}: not an IP address") from exc
        removed = b.reset_asset(ip, relearn or 0.0)
        detail = f"reset asset {ip}" + (f", relearn for {relearn:g} s" if relearn else "")
    else:
        fresh = Baseline()
        removed = sum(b.counts().values())
        for name in ("sets", "ranges", "bounds", "polls", "values", "peaks", "relearn"):
            setattr(b, name, getattr(fresh, name))
        detail = "reset everything"
    b.commit("reset", b.updated, detail)
    return removed, detail


def cmd_reset(args: argparse.Namespace) -> int:
    path = Path(args.baseline)
    b = _load(args.baseline)
    removed, detail = reset_baseline(b, args.asset, args.relearn)
    b.save(path)
    print(f"{detail}: {removed} entries removed; revision {b.revision}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``zonewarden baseline ...`` to the top-level parser (sensor/cli.py)."""
    p = subparsers.add_parser("baseline", help="show, diff, accept alerts into, or reset a learned baseline")
    sub = p.add_subparsers(dest="baseline_command", required=True)

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--baseline", metavar="FILE", required=True, help="the baseline JSON file")

    s = sub.add_parser("show", help="what the baseline knows")
    common(s)
    s.add_argument("--json", action="store_true", help="print the stored JSON")
    s.set_defaults(func=cmd_show)

    d = sub.add_parser("diff", help="changes between revisions or against another baseline file")
    common(d)
    d.add_argument("--against", metavar="OTHER", help="an older baseline file to compare with")
    d.add_argument("--revision", type=int, help="show the changes recorded for this revision")
    d.set_defaults(func=cmd_diff)

    a = sub.add_parser("accept", help="fold an anomaly alert's evidence into the baseline")
    a.add_argument("alert_id")
    common(a)
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument("--eve", metavar="FILE", help="EVE file holding the alert")
    src.add_argument("--db", metavar="PATH", help="alert store holding the alert")
    a.set_defaults(func=cmd_accept)

    r = sub.add_parser("reset", help="forget one asset (and re-learn it) or everything")
    common(r)
    r.add_argument("--asset", metavar="IP", help="only this asset")
    r.add_argument("--relearn", type=float, metavar="SECONDS", help="learn the asset again for this long")
    r.set_defaults(func=cmd_reset)
