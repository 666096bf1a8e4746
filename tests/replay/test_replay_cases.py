"""Replay cases in the style of suricata-verify (DESIGN.md §8).

Each folder under ``cases/`` holds a ``case.yaml``:

```yaml
purpose: one line on what the case proves
pcap: pcaps/modbus-pymodbus-polling.pcap      # repo-relative; or "shared:NAME" for ../shared/pcaps/public;
build: mid_stream                             # ...or a builder in builders.py that writes the capture
exit_code: 0                                  # expected exit code of `zonewarden replay` (default 0)
summary:                                      # dotted paths into the --summary-json output, exact values
  modbus.requests_by_function.3: 51
before:                                       # zonewarden commands run first (e.g. tag assets in a store)
  - [assets, tag, 10.0.0.20, --tag, plc, --db, "{tmp}/zonewarden.db"]
args: ["--db", "{tmp}/zonewarden.db"]         # extra replay arguments; "{tmp}" is the case's temp dir
checks:                                       # EVE records: partial match on dotted paths, with a count
  - {count: 1, match: {event_type: anomaly, anomaly.event: modbus.invalid_length}}
  - {min_count: 1, match: {event_type: modbus, modbus.function: 3}}
```

The case runs the real command line (``sensor.cli.main``), so the contract is what is tested.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import builders
import pytest
import yaml
from zw_paths import REPO, shared_public_dir

from sensor.cli import main

CASES = Path(__file__).parent / "cases"
_MISSING = object()


def _case_dirs() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if (p / "case.yaml").is_file())


def dotted(record: Any, path: str) -> Any:
    """The value at a dotted path (``a.b.3``); list indices when numeric.

    Keys may themselves hold dots (``anomalies_by_kind.modbus.invalid_length``): the longest key
    that matches at each level wins.
    """
    parts = path.split(".")
    cur = record
    i = 0
    while i < len(parts):
        if isinstance(cur, dict):
            for j in range(len(parts), i, -1):
                key = ".".join(parts[i:j])
                if key in cur:
                    cur, i = cur[key], j
                    break
            else:
                return _MISSING
        elif (
            isinstance(cur, list) and parts[i].lstrip("-").isdigit() and -len(cur) <= int(parts[i]) < len(cur)
        ):
            cur, i = cur[int(parts[i])], i + 1
        else:
            return _MISSING
    return cur


def matches(record: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(dotted(record, path) == value for path, value in expected.items())


def _inputs(case: dict[str, Any], tmp_path: Path) -> list[Path]:
    pcaps = case.get("pcap", [])
    pcaps = [pcaps] if isinstance(pcaps, str) else pcaps
    paths = []
    for name in pcaps:
        if name.startswith("shared:"):
            paths.append(shared_public_dir() / name.removeprefix("shared:"))
        else:
            paths.append(REPO / name)
    if "build" in case:
        out = tmp_path / f"{case['build']}.pcap"
        getattr(builders, case["build"])(out)
        paths.append(out)
    for p in paths:
        if not p.exists():
            pytest.fail(f"case input {p} does not exist")
    return paths


@pytest.mark.parametrize("case_dir", _case_dirs(), ids=lambda p: p.name)
def test_replay_case(
    case_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # paths in a case's args (policies, rules) are relative to the repository
    case = yaml.safe_load((case_dir / "case.yaml").read_text())
    assert case.get("purpose"), f"{case_dir.name}: case.yaml needs a purpose line"
    eve = tmp_path / "eve.json"
    summary_path = tmp_path / "summary.json"
    for command in case.get("before") or []:
        assert main([str(a).replace("{tmp}", str(tmp_path)) for a in command]) == 0, capsys.readouterr().err
    capsys.readouterr()
    args = ["replay", "-q", *map(str, _inputs(case, tmp_path)), "--eve", str(eve)]
    args += ["--summary-json", str(summary_path)]
    args += [str(a).replace("{tmp}", str(tmp_path)) for a in case.get("args", [])]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == case.get("exit_code", 0), err
    assert "Traceback" not in err
    summary = json.loads(summary_path.read_text())
    records = [json.loads(line) for line in eve.read_text().splitlines()]
    for path, value in (case.get("summary") or {}).items():
        got = dotted(summary, path)
        assert got == value, (
            f"summary {path}: expected {value!r}, got {'missing' if got is _MISSING else got!r}"
        )
    for check in case.get("checks") or []:
        found = [r for r in records if matches(r, check["match"])]
        if "count" in check:
            assert len(found) == check["count"], (
                f"{check['match']}: {len(found)} records, want {check['count']}"
            )
        if "min_count" in check:
            assert len(found) >= check["min_count"], f"{check['match']}: {len(found)} < {check['min_count']}"
    for text in case.get("stderr_contains") or []:
        assert text in err
