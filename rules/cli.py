"""``zonewarden rules update|list|enable|disable`` and ``zonewarden ingest-eve``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sensor.errors import UserError

EXIT_OK = 0
EXIT_FAIL = 1


def _dirs(args: argparse.Namespace) -> tuple[Path, Path]:
    from rules.manage import RULES_DIR, default_data_dir

    rules_dir = Path(args.rules_dir) if args.rules_dir else RULES_DIR
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    return rules_dir, data_dir


def cmd_update(args: argparse.Namespace) -> int:
    from rules.manage import update

    rules_dir, data_dir = _dirs(args)
    result = update(rules_dir, data_dir, offline=args.offline, suricata_version=args.suricata_version)
    if result.returncode != 0:
        sys.stderr.write(result.log)
        print(f"zonewarden: error: suricata-update failed (exit {result.returncode})", file=sys.stderr)
        return EXIT_FAIL
    print(
        f"{result.output}: {result.rules} rules ({result.enabled} enabled; engine: {result.loaded} loaded, "
        f"{result.unsupported} unsupported, {result.invalid} invalid); sources: "
        + ", ".join(f"{k} {v}" for k, v in sorted(result.by_source.items()))
    )
    return EXIT_OK


def _records(args: argparse.Namespace) -> list[dict[str, Any]]:
    from rules.manage import load_provenance, shipped_records

    rules_dir, data_dir = _dirs(args)
    records = load_provenance(data_dir)
    return records if records is not None else shipped_records(rules_dir)


def cmd_list(args: argparse.Namespace) -> int:
    records = _records(args)
    if args.unsupported:
        records = [r for r in records if r["status"] in ("unsupported", "invalid")]
    if args.json:
        sys.stdout.write(json.dumps(records, indent=1) + "\n")
        return EXIT_OK
    for r in records:
        reason = f"  ({r['reason']})" if r.get("reason") else ""
        print(
            f"{r['gid']}:{r['sid']}:{r['rev']}\t{r['status']}\t{r['source']}/{r['file']}\t{r['msg']}{reason}"
        )
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print("total " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), file=sys.stderr)
    return EXIT_OK


def _toggle(args: argparse.Namespace, enabled: bool) -> int:
    from rules.manage import all_rules, set_enabled

    rules_dir, _ = _dirs(args)
    known = all_rules(_records(args))
    if args.sid not in known:
        raise UserError(f"no rule with sid {args.sid} in the rule set (run `zonewarden rules update` first?)")
    changed = set_enabled(rules_dir, args.sid, enabled, gid=int(known[args.sid].get("gid") or 1))
    word = "enabled" if enabled else "disabled"
    print(f"1:{args.sid} {word} in {rules_dir}" + ("" if changed else " (already)") + "; run `rules update`")
    return EXIT_OK


def cmd_enable(args: argparse.Namespace) -> int:
    return _toggle(args, True)


def cmd_disable(args: argparse.Namespace) -> int:
    return _toggle(args, False)


def cmd_ingest_eve(args: argparse.Namespace) -> int:
    """Suricata EVE alerts -> the alert stream: the store (--db) first, then the configured sinks."""
    from rules.eve_ingest import ingest_file
    from sensor.config import load_config
    from sensor.outputs.deliver import Deliverer
    from sensor.outputs.eve import EveWriter
    from sensor.records import Alert

    path = Path(args.file)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    alerts: list[Alert] = []
    counters = ingest_file(path, alerts.append)
    if args.db:
        from sensor.assets.graph import CommunicationGraph
        from sensor.assets.inventory import Inventory
        from sensor.store.sqlite import Store

        store = Store(Path(args.db))
        try:
            for alert in alerts:
                store.handle(alert)
            store.save(Inventory(), CommunicationGraph())
        finally:
            store.close()
    if args.eve:
        writer = EveWriter(Path(args.eve))
        for alert in alerts:
            writer.handle(alert)
        writer.close()
    if args.config:
        cfg = load_config(args.config)
        if cfg.outputs.sinks:
            deliverer = Deliverer.from_config(cfg.outputs)
            deliverer.start()
            deliverer.submit_many(alerts)
            deliverer.close(drain_timeout=args.drain_timeout)
    print(f"{path}: " + ", ".join(f"{k} {v}" for k, v in sorted(counters.items())), file=sys.stderr)
    if not (args.db or args.eve or args.config):
        for alert in alerts:
            from sensor.outputs.eve import dumps, eve_record

            sys.stdout.write(dumps(eve_record(alert)) + "\n")
    return EXIT_OK


def register(sub: Any) -> None:
    r = sub.add_parser("rules", help="manage the Suricata-format rule set (suricata-update)")
    rsub = r.add_subparsers(dest="rules_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--rules-dir", metavar="DIR", help="update.yaml and *.conf (default: the shipped rules/)"
        )
        p.add_argument("--data-dir", metavar="DIR", help="where the active rule set is built")

    u = rsub.add_parser("update", help="build the active rule set with suricata-update")
    common(u)
    u.add_argument("--offline", action="store_true", help="never touch the network; use cached downloads")
    u.add_argument("--suricata-version", metavar="X.Y.Z", help="version the rules are selected for")
    u.set_defaults(func=cmd_update)

    ls = rsub.add_parser("list", help="list rules with provenance and engine status")
    common(ls)
    ls.add_argument("--unsupported", action="store_true", help="only rules the engine cannot evaluate")
    ls.add_argument("--json", action="store_true", help="JSON output")
    ls.set_defaults(func=cmd_list)

    for name, func, text in (("enable", cmd_enable, "enable"), ("disable", cmd_disable, "disable")):
        t = rsub.add_parser(name, help=f"{text} a rule by sid (edits {name}.conf)")
        common(t)
        t.add_argument("sid", type=int)
        t.set_defaults(func=func)

    e = sub.add_parser("ingest-eve", help="bring Suricata's EVE alerts into zonewarden's alert stream")
    e.add_argument("file", help="Suricata eve.json")
    e.add_argument("--db", metavar="PATH", help="store the alerts in this SQLite store")
    e.add_argument("--eve", metavar="FILE", help="write the alerts as zonewarden EVE lines")
    e.add_argument("--config", metavar="FILE", help="deliver to the sinks of this configuration")
    e.add_argument("--drain-timeout", type=float, default=10.0, help="seconds to wait for sinks at the end")
    e.set_defaults(func=cmd_ingest_eve)
