"""Throughput and memory benchmark: zonewarden replay against tshark on the same capture (issue 2).

Prints figures only; nothing here asserts a speed. Steps:

1. Build (seeded, deterministic) a capture of ``--packets`` frames of Modbus/TCP polling among ~50 hosts
   plus OPC UA Read polling (bench/build_capture.py), and one of twice that length for the memory check.
   Both live in a temporary directory that is removed afterwards (``--keep`` keeps it).
2. Compile the project's bytecode (as an installed package has it), then run
   ``zonewarden replay FILE --summary-json OUT`` and ``tshark -r FILE -T fields -e modbus.func_code``
   (output to /dev/null), one after the other, each as its own child process: wall time, and the child's
   own peak RSS from ``os.wait4`` (so one child's peak never hides in another's).
3. Run two loops of bench/ceiling.py on the same capture, each as its own process: ``count`` only reads
   records, unpacks the headers and counts per flow and function code (the ceiling of any Python packet
   path); ``pairing`` also follows TCP sequence numbers and pairs Modbus requests with responses, on the
   90% of packets that need nothing more (the floor of a Python Modbus monitor's per-packet work).
4. Print packets, packets/s of each, the ratio, zonewarden's peak RSS at N and 2N packets, and whether
   the summary's ``modbus.requests_by_function`` equals what the generator wrote (OK / MISMATCH).

Usage: ``python bench/throughput.py [--packets 500000] [--seed 1] [--no-opcua] [--zonewarden CMD]
[--tshark PATH] [--no-growth] [--keep] [--json FILE]``
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_capture import Expected, build_capture

REPO = Path(__file__).resolve().parent.parent


@dataclass(slots=True)
class Run:
    """One child process: what ran, how long it took, its own peak RSS."""

    command: list[str]
    returncode: int
    wall_s: float
    peak_rss_mib: float
    stderr_tail: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_measured(command: list[str], stdout_path: str = os.devnull) -> Run:
    """Run ``command``, timing it and reading its peak RSS from ``wait4`` (Linux reports KiB)."""
    with open(stdout_path, "wb") as stdout, tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        except OSError as error:
            return Run(command, 127, 0.0, 0.0, str(error))
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        lines = [
            line
            for line in stderr.read().decode("utf-8", "replace").splitlines()
            if not line.startswith("Running as user")
        ]
    return Run(command, process.returncode, wall, usage.ru_maxrss / 1024, "\n".join(lines[-5:]))


def zonewarden_command(option: str | None) -> list[str] | None:
    """The replay command: --zonewarden, else the venv's console script, else ``python -m sensor.cli``."""
    if option:
        return shlex.split(option)
    script = REPO / ".venv" / "bin" / "zonewarden"
    if script.is_file():
        return [str(script)]
    if (REPO / "sensor" / "cli.py").is_file():
        return [sys.executable, "-m", "sensor.cli"]
    return None


def compare_counts(label: str, expected: dict[str, int], got: Any) -> str:
    got_counts = {str(key): value for key, value in got.items()} if isinstance(got, dict) else {}
    expected_counts = {key: value for key, value in expected.items() if value}
    if got_counts == expected_counts:
        return f"{label}: OK ({sum(expected_counts.values())})"
    keys = sorted(set(got_counts) | set(expected_counts), key=lambda key: (len(key), key))
    diffs = ", ".join(
        f"{key}: {got_counts.get(key, 0)} vs {expected_counts.get(key, 0)}"
        for key in keys
        if got_counts.get(key, 0) != expected_counts.get(key, 0)
    )
    return f"{label}: MISMATCH (zonewarden vs generator: {diffs})"


def check_summary(summary_path: Path, expected: Expected) -> list[str]:
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError) as error:
        return [f"requests_by_function: MISMATCH (no readable summary: {error})"]
    modbus = summary.get("modbus", {}) if isinstance(summary, dict) else {}
    lines = [
        compare_counts(
            "requests_by_function", dict(expected.requests_by_function), modbus.get("requests_by_function")
        )
    ]
    # informational: how a dissector files exception responses is its own choice
    lines.append(
        compare_counts(
            "exceptions_by_code (info)", dict(expected.exceptions_by_code), modbus.get("exceptions_by_code")
        )
    )
    lines.append(f"summary packets: {summary.get('packets')} (generator {expected.packets})")
    return lines


def compile_bytecode() -> None:
    """Compile the project's modules to bytecode before the timed run, as an installed sensor has them
    (pip compiles a package when it installs it; the Dockerfile's image does). Otherwise an editable
    checkout run with PYTHONDONTWRITEBYTECODE set compiles every module on every start (~0.1 s)."""
    packages = [name for name in ("sensor", "policy", "api", "rules") if (REPO / name).is_dir()]
    done = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", *packages], cwd=REPO, capture_output=True, check=False
    )
    state = "compiled" if done.returncode == 0 else f"compileall failed (exit {done.returncode})"
    print(f"bytecode         {state}: {', '.join(packages)}")


def replay(zonewarden: list[str], capture: Path, summary: Path) -> Run:
    return run_measured([*zonewarden, "replay", str(capture), "--summary-json", str(summary)])


def tshark_run(tshark: str, capture: Path) -> Run:
    return run_measured([tshark, "-r", str(capture), "-n", "-T", "fields", "-e", "modbus.func_code"])


def rate(packets: int, run: Run) -> float:
    return packets / run.wall_s if run.ok and run.wall_s > 0 else 0.0


def describe(packets: int, run: Run) -> str:
    return (
        f"{rate(packets, run):>12,.0f} packets/s  ({run.wall_s:.2f} s, peak RSS {run.peak_rss_mib:.1f} MiB)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--opcua", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--zonewarden", help="replay command (default: .venv/bin/zonewarden or python -m sensor.cli)"
    )
    parser.add_argument("--tshark", default=shutil.which("tshark"), help="tshark executable")
    parser.add_argument(
        "--growth", action=argparse.BooleanOptionalAction, default=True, help="also run at 2N packets"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory with the captures")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)

    zonewarden = zonewarden_command(args.zonewarden)
    workdir = Path(tempfile.mkdtemp(prefix="zonewarden-bench-"))
    figures: dict[str, Any] = {"packets": args.packets, "seed": args.seed, "opcua": args.opcua}
    try:
        capture = workdir / f"modbus-{args.packets}.pcap"
        started = time.perf_counter()
        expected = build_capture(capture, args.packets, args.seed, args.opcua)
        built = time.perf_counter() - started
        size_mib = capture.stat().st_size / 2**20
        print(
            f"capture          {capture} ({expected.packets} packets, {size_mib:.1f} MiB, "
            f"built in {built:.1f} s)"
        )
        print(
            f"                 {expected.hosts} hosts, {expected.modbus_connections} Modbus + "
            f"{expected.opcua_connections} OPC UA connections, "
            f"{sum(expected.requests_by_function.values())} Modbus requests, "
            f"{sum(expected.opcua_services.values())} OPC UA Read messages"
        )
        figures["generator"] = expected.as_json()

        if zonewarden is None:
            print("zonewarden       not available (no .venv/bin/zonewarden, no sensor/cli.py): skipped")
            zw: Run | None = None
        else:
            compile_bytecode()
            zw = replay(zonewarden, capture, workdir / "summary.json")
            figures["zonewarden"] = asdict(zw)
            if zw.ok:
                print(f"zonewarden       {describe(expected.packets, zw)}")
                checks = check_summary(workdir / "summary.json", expected)
                figures["checks"] = checks
                for line in checks:
                    print(f"  check          {line}")
            else:
                print(f"zonewarden       FAILED (exit {zw.returncode}): {zw.stderr_tail}")

        ts: Run | None = None
        if args.tshark:
            ts = tshark_run(args.tshark, capture)
            figures["tshark"] = asdict(ts)
            if ts.ok:
                print(f"tshark           {describe(expected.packets, ts)}")
            else:
                print(f"tshark           FAILED (exit {ts.returncode}): {ts.stderr_tail}")
        else:
            print("tshark           not installed: skipped")

        if zw is not None and ts is not None and zw.ok and ts.ok:
            ratio = rate(expected.packets, zw) / rate(expected.packets, ts)
            figures["ratio"] = ratio
            print(f"ratio            {ratio:.2f}x tshark's packets/s")

        # bench/ceiling.py: "count" reads, unpacks headers and counts (nothing a sensor must do);
        # "pairing" adds the least per-packet work of a Modbus monitor on 90% of the packets
        for loop in ("count", "pairing"):
            floor = run_measured(
                [sys.executable, str(REPO / "bench" / "ceiling.py"), str(capture), "--loop", loop]
            )
            figures[f"cpython_{loop}"] = asdict(floor)
            label = f"cpython {loop}"
            if floor.ok:
                versus = (
                    f" ({rate(expected.packets, floor) / rate(expected.packets, ts):.1f}x tshark)"
                    if ts and ts.ok
                    else ""
                )
                print(f"{label:<17}{describe(expected.packets, floor)}{versus}")
            else:
                print(f"{label:<17}FAILED (exit {floor.returncode}): {floor.stderr_tail}")

        if args.growth:
            double = workdir / f"modbus-{2 * args.packets}.pcap"
            expected_double = build_capture(double, 2 * args.packets, args.seed, args.opcua)
            print(f"memory growth    capture of {expected_double.packets} packets")
            if zonewarden is not None and zw is not None and zw.ok:
                zw2 = replay(zonewarden, double, workdir / "summary-2n.json")
                figures["zonewarden_2n"] = asdict(zw2)
                if zw2.ok:
                    growth = zw2.peak_rss_mib / zw.peak_rss_mib if zw.peak_rss_mib else 0.0
                    figures["rss_growth"] = growth
                    print(
                        f"  zonewarden     peak RSS {zw.peak_rss_mib:.1f} MiB at {expected.packets}, "
                        f"{zw2.peak_rss_mib:.1f} MiB at {expected_double.packets} (x{growth:.2f}); "
                        f"{rate(expected_double.packets, zw2):,.0f} packets/s"
                    )
                    for line in check_summary(workdir / "summary-2n.json", expected_double):
                        print(f"  check 2N       {line}")
                else:
                    print(f"  zonewarden     FAILED at 2N (exit {zw2.returncode}): {zw2.stderr_tail}")
            if ts is not None and ts.ok and args.tshark:
                ts2 = tshark_run(args.tshark, double)
                figures["tshark_2n"] = asdict(ts2)
                print(
                    f"  tshark         peak RSS {ts.peak_rss_mib:.1f} MiB at {expected.packets}, "
                    f"{ts2.peak_rss_mib:.1f} MiB at {expected_double.packets}; "
                    f"{rate(expected_double.packets, ts2):,.0f} packets/s"
                )
    finally:
        if args.keep:
            print(f"kept             {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
