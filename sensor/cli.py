"""The ``zonewarden`` command line.

Contracts other tools rely on (keep them; extend, never rename):

* ``zonewarden replay PCAP... [--eve FILE] [--summary-json FILE|-] [--deep] [--policy FILE]``: exit 0 on
  success (warnings such as a truncated last record go to stderr), 2 when a file is not a capture or is
  corrupt (one line on stderr, never a traceback; the other files are still processed).
* ``zonewarden sniff -i IFACE [-i IFACE ...] [--bpf FILTER] [--eve FILE] [--summary-json FILE|-]
  [--duration S] [--policy FILE] [--learn-for SECONDS] [--baseline FILE] [--follow-eve FILE] [--deep]``:
  several ``-i`` capture together (a TAP's two monitor ports, SPAN sessions of several switches); an
  interface that cannot be opened is one line on stderr and exit code 2. The summary's
  ``capture_by_interface`` has each interface's capture counters (their sum is ``capture``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

from sensor.errors import UserError
from sensor.records import Frame

EXIT_OK = 0
EXIT_USAGE = 2


class Progress:
    """A one-line progress bar on a terminal: file, percentage of its bytes, packets, rate."""

    def __init__(self, stream: TextIO, paths: Sequence[Path]) -> None:
        self.stream = stream
        self.total = len(paths)
        self.index = 0
        self.size = 1
        self.name = ""
        self.file_bytes = 0
        self.packets = 0
        self.started = time.monotonic()
        self._next_draw = 0.0
        self._done = False

    def start_file(self, path: Path) -> None:
        self.index += 1
        self.name = path.name
        self.file_bytes = 0
        try:
            self.size = max(1, path.stat().st_size)
        except OSError:
            self.size = 1
        self.draw(force=True)

    def frame(self, frame: Frame) -> None:
        self.packets += 1
        # 16 bytes of record header per packet: close enough for a progress bar on pcap and pcapng.
        self.file_bytes += len(frame.data) + 16
        if self.packets & 0x3FF == 0:
            self.draw()

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_draw:
            return
        self._next_draw = now + 0.2
        frac = min(1.0, self.file_bytes / self.size)
        bar = "#" * int(frac * 24)
        rate = self.packets / max(now - self.started, 1e-6)
        self.stream.write(
            f"\r[{bar:<24}] {frac * 100:5.1f}% file {self.index}/{self.total} {self.name[:32]:<32} "
            f"{self.packets:>10} pkts {rate:>9.0f} pkt/s"
        )
        self.stream.flush()

    def tshark(self) -> None:
        """``--deep``: tshark reads the files now, and the bar does not move meanwhile: say so."""
        if self.index:  # after the native pass: its bar ends here
            self.done()
        self.stream.write(f"tshark: naming the other protocols in {self.total} file(s)...\n")
        self.stream.flush()

    def done(self) -> None:
        if self._done:
            return
        self._done = True
        self.file_bytes = self.size
        self.draw(force=True)
        self.stream.write("\n")
        self.stream.flush()


def _write_json(target: str, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False)
    if target == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    else:
        Path(target).write_text(text + "\n", encoding="utf-8")


def _with_config(config: Any, args: argparse.Namespace) -> Any:
    """``--config FILE`` / ``--rules PATH`` (sensor/config.py, imported only when one of them is given)."""
    if not args.config and not args.rules:
        return config
    from sensor.config import apply_config_args

    return apply_config_args(config, args)


def _with_pki(config: Any, args: argparse.Namespace) -> Any:
    """``--pki-dir DIR`` / ``--cert-expiry-days N``: judge certificates seen against a PKI (api/pki/wire)."""
    if not getattr(args, "pki_dir", None):
        return config
    return dataclasses.replace(config, pki_dir=Path(args.pki_dir), cert_expiring_days=args.cert_expiry_days)


def _pki_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pki-dir",
        metavar="DIR",
        help="judge every certificate seen against this PKI (zonewarden pki init); no passphrase needed",
    )
    parser.add_argument(
        "--cert-expiry-days",
        type=int,
        default=30,
        metavar="N",
        help="with --pki-dir: alert on certificates in use that expire within N days (default 30)",
    )


def cmd_replay(args: argparse.Namespace) -> int:
    from sensor.runtime import SensorConfig, replay

    paths = [Path(p) for p in args.pcap]
    config = SensorConfig(eve_path=Path(args.eve) if args.eve else None, deep=args.deep)
    if args.policy:
        config = dataclasses.replace(config, policy_path=Path(args.policy))
    if args.db:
        config = dataclasses.replace(config, db_path=Path(args.db))
    if args.learn_for is not None or args.baseline:
        config = dataclasses.replace(
            config, learn_for=args.learn_for, baseline_path=Path(args.baseline) if args.baseline else None
        )
    config = _with_config(config, args)
    config = _with_pki(config, args)
    progress = Progress(sys.stderr, paths) if sys.stderr.isatty() and not args.quiet else None
    summary, reports = replay(
        paths,
        config,
        on_frame=progress.frame if progress else None,
        on_file=progress.start_file if progress else None,
        before_tshark=progress.tshark if progress else None,
    )
    if progress:
        progress.done()
    if args.summary_json:
        _write_json(args.summary_json, summary)
    failed = False
    for report in reports:
        for warning in report.warnings:
            print(f"zonewarden: warning: {warning}", file=sys.stderr)
        if report.error:
            print(f"zonewarden: error: {report.error}", file=sys.stderr)
            failed = True
    return EXIT_USAGE if failed else EXIT_OK


def cmd_sniff(args: argparse.Namespace) -> int:
    """The live sensor (sensor/live.py, the same runner as ``zonewarden serve --sniff``)."""
    import threading

    from sensor.live import LiveRunner
    from sensor.runtime import Sensor, SensorConfig

    config = SensorConfig(
        eve_path=Path(args.eve) if args.eve else None,
        policy_path=Path(args.policy) if args.policy else None,
        db_path=Path(args.db) if args.db else None,
        learn_for=args.learn_for,
        baseline_path=Path(args.baseline) if args.baseline else None,
    )
    sensor = Sensor(_with_pki(_with_config(config, args), args))
    runner = LiveRunner(
        sensor,
        interface=args.interface,
        bpf=args.bpf,
        follow_eve=Path(args.follow_eve) if args.follow_eve else None,
        deep=args.deep,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    summary = runner.run(args.duration, stop)
    if args.summary_json:
        _write_json(args.summary_json, summary)
    if runner.error is not None:
        print(f"zonewarden: error: {runner.error}", file=sys.stderr)
        return 1
    return EXIT_OK


class _WholeParserNeeded(Exception):
    """The replay/sniff-only parser met something only the whole parser may answer (see _parse_args)."""


class _CoreParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _WholeParserNeeded(message)


def build_parser(*, core_only: bool = False) -> argparse.ArgumentParser:
    """The ``zonewarden`` parser; ``core_only``: replay and sniff alone, raising on errors (_parse_args)."""
    parser_class = _CoreParser if core_only else argparse.ArgumentParser
    parser = parser_class(prog="zonewarden", description="Passive OT/ICS security monitor")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("replay", help="process capture files (pcap, pcapng, gzip) in order")
    p.add_argument("pcap", nargs="+", help="capture files")
    p.add_argument("--eve", metavar="FILE", help="write one EVE JSON line per event to FILE")
    p.add_argument("--summary-json", metavar="FILE", help="write the summary as JSON to FILE ('-' = stdout)")
    p.add_argument("--deep", action="store_true", help="identify other ICS protocols with tshark")
    p.add_argument("--policy", metavar="FILE", help="check every operation against a zone/conduit policy")
    p.add_argument(
        "--learn-for",
        type=float,
        metavar="SECONDS",
        help="anomaly detection: learn on the first SECONDS of packet time, detect on the rest",
    )
    p.add_argument(
        "--baseline",
        metavar="FILE",
        help="anomaly detection: reuse this baseline if it exists (learn only with --learn-for); save after",
    )
    p.add_argument("--db", metavar="PATH", help="save inventory, graph and alerts to this SQLite store")
    p.add_argument("--config", metavar="FILE", help="sensor configuration (YAML): rules, alert sinks")
    p.add_argument("--rules", metavar="PATH", action="append", help="Suricata-format rules file or directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _pki_flags(p)
    p.set_defaults(func=cmd_replay)

    s = sub.add_parser("sniff", help="capture live from a SPAN/mirror interface (never transmits)")
    s.add_argument(
        "-i",
        "--interface",
        required=True,
        action="append",
        metavar="IFACE",
        help="interface to capture on; repeat for several (a TAP's two monitor ports, several SPAN sessions)",
    )
    s.add_argument("--bpf", metavar="FILTER", help="BPF capture filter")
    s.add_argument("--eve", metavar="FILE")
    s.add_argument("--summary-json", metavar="FILE")
    s.add_argument("--duration", type=float, help="stop after this many seconds")
    s.add_argument("--db", metavar="PATH", help="save inventory, graph and alerts to this SQLite store")
    s.add_argument("--policy", metavar="FILE", help="zone/conduit policy; reloaded when the file changes")
    s.add_argument("--config", metavar="FILE", help="sensor configuration (YAML): rules, alert sinks")
    s.add_argument("--rules", metavar="PATH", action="append", help="Suricata-format rules file or directory")
    s.add_argument(
        "--learn-for",
        type=float,
        metavar="SECONDS",
        help="anomaly detection: learn on the first SECONDS of packet time, detect after",
    )
    s.add_argument(
        "--baseline",
        metavar="FILE",
        help="anomaly detection: reuse this baseline if it exists, else learn; saved at exit",
    )
    s.add_argument(
        "--follow-eve", metavar="FILE", help="follow Suricata's EVE file: its alerts join the alert stream"
    )
    s.add_argument(
        "--deep", action="store_true", help="identify other ICS protocols with tshark beside capture"
    )
    _pki_flags(s)
    s.set_defaults(func=cmd_sniff)
    if core_only:
        return parser

    from api.pki.cli import register as register_pki

    register_pki(sub)
    from api.cli import register as register_api

    register_api(sub)
    from policy.cli import register as register_policy

    register_policy(sub)
    from sensor.detect.cli import register as register_baseline

    register_baseline(sub)
    from sensor.assets.cli import register as register_assets

    register_assets(sub)
    from rules.cli import register as register_rules

    register_rules(sub)
    return parser


CORE_COMMANDS = ("replay", "sniff")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; a replay or sniff without registering every other sub-command.

    Importing and building the parsers of all sub-commands costs tens of milliseconds, paid by every
    replay (a throughput benchmark counts start-up). When the command is replay or sniff (nothing but
    ``-v`` before it), a parser of those two is tried first. It raises instead of printing on anything
    it would refuse, and the whole parser then parses the same words again, so every usage line and
    error message is the whole parser's. A help request for replay or sniff prints the same text from
    either parser (the sub-parser's own); ``-h`` before the command goes to the whole parser.
    """
    words = sys.argv[1:] if argv is None else list(argv)
    first = 0
    while first < len(words) and words[first] in ("-v", "--verbose"):
        first += 1
    if first < len(words) and words[first] in CORE_COMMANDS:
        try:
            return build_parser(core_only=True).parse_args(words)
        except _WholeParserNeeded:
            pass
    return build_parser().parse_args(words)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="zonewarden: %(levelname)s: %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"zonewarden: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
