"""Rule management with suricata-update: sources -> active rule set, with provenance per rule.

``zonewarden rules update [--offline]``:

1. reads ``update.yaml`` (a suricata-update configuration with a ``zonewarden:`` section naming the
   Suricata version, the ``suricata.yaml`` fragment and the sources);
2. packs every on-disk source (the project's ``*.rules``, an operator's directory or bundle) into a
   deterministic ``.tar.gz`` and names it to suricata-update by a ``file://`` URL; URL sources are
   passed as they are. Offline, the on-disk archives are placed in suricata-update's download cache
   (the copy it would itself make when fetching a ``file://`` URL) and suricata-update runs with
   ``--offline``, so remote sources come from their last download and nothing touches the network;
3. runs the real suricata-update (a subprocess) with ``--suricata-version``, ``--no-test``,
   ``--no-reload``, ``--suricata-conf`` (modbus, mqtt and dnp3 enabled), the enable/disable/modify/
   drop files, a state and cache directory and an output directory inside the data directory;
4. records provenance: for each rule of the output, the source, file, gid, sid and rev it came
   from, whether suricata-update left it enabled, and whether zonewarden's engine loads it or
   reports it unsupported (``provenance.json`` beside ``suricata.rules``).

``rules enable|disable SID`` edit ``enable.conf``/``disable.conf`` (a SID is moved from one file to
the other), which the next update applies.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from rules.engine import RuleSet
from rules.parse import parse_rules_text
from sensor.errors import UserError

log = logging.getLogger(__name__)

RULES_DIR = Path(__file__).resolve().parent
OUTPUT_NAME = "suricata.rules"
PROVENANCE_NAME = "provenance.json"
DEFAULT_SURICATA_VERSION = "7.0.8"
_TAR_MTIME = 946684800  # fixed member time: the same rules give the same archive (and cache name)


def default_data_dir() -> Path:
    base = os.environ.get("ZONEWARDEN_DATA")
    if base:
        return Path(base) / "rules"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "zonewarden" / "rules"


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    path: Path | None = None
    url: str | None = None


@dataclass(slots=True)
class UpdateResult:
    returncode: int
    output: Path
    provenance: Path
    rules: int = 0
    enabled: int = 0
    loaded: int = 0
    unsupported: int = 0
    invalid: int = 0
    log: str = ""
    by_source: dict[str, int] = field(default_factory=dict)


def load_update_config(rules_dir: Path) -> tuple[dict[str, Any], list[Source]]:
    path = rules_dir / "update.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{path}: cannot read ({exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: must be a mapping")
    zw = data.get("zonewarden") or {}
    sources: list[Source] = []
    for i, raw in enumerate(zw.get("sources") or []):
        if not isinstance(raw, dict) or not raw.get("name"):
            raise UserError(f"{path}: zonewarden.sources[{i}] needs a name")
        name = str(raw["name"])
        if "/" in name or name.startswith("."):
            raise UserError(f"{path}: source name {name!r} must be a plain name")
        if raw.get("path") is not None:
            p = Path(str(raw["path"]))
            sources.append(Source(name, path=p if p.is_absolute() else (rules_dir / p).resolve()))
        elif raw.get("url"):
            url = str(raw["url"])
            if urlsplit(url).scheme not in ("http", "https", "file"):
                raise UserError(f"{path}: source {name}: only http, https and file URLs")
            sources.append(Source(name, url=url))
        else:
            raise UserError(f"{path}: source {name} needs a path or a url")
    if not sources:
        raise UserError(f"{path}: no sources under zonewarden.sources")
    return data, sources


def _source_members(path: Path) -> list[tuple[str, bytes]]:
    """(file name, content) of the rule files of an on-disk source (directory, file or archive)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".rules")
        return [(p.name, p.read_bytes()) for p in files]
    if path.is_file() and path.suffix == ".rules":
        return [(path.name, path.read_bytes())]
    if path.is_file():
        return _archive_members(path.read_bytes())
    raise UserError(f"{path}: rules source does not exist")


def _archive_members(data: bytes) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(".rules") and member.size < 64 * 1024 * 1024:
                    fh = tar.extractfile(member)
                    if fh is not None:
                        out.append((Path(member.name).name, fh.read()))
    except tarfile.TarError:
        if data[:2] == b"\x1f\x8b":
            return [("rules.rules", gzip.decompress(data))]
        return [("rules.rules", data)]
    return out


def _pack(members: list[tuple[str, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(f"rules/{name}")
            info.size = len(content)
            info.mtime = _TAR_MTIME
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def cache_name(url: str) -> str:
    """The file name suricata-update gives a download of ``url`` in its cache directory."""
    base = os.path.basename(url).split("?", 1)[0]
    return f"{hashlib.md5(url.encode()).hexdigest()}-{base}"


def _suricata_update_command() -> list[str]:
    return [sys.executable, "-c", "from suricata.update.main import main; main()"]


def update(
    rules_dir: Path = RULES_DIR,
    data_dir: Path | None = None,
    offline: bool = False,
    suricata_version: str | None = None,
    timeout: float = 600.0,
) -> UpdateResult:
    """Build the active rule set with suricata-update; see the module docstring."""
    data_dir = (data_dir or default_data_dir()).resolve()
    rules_dir = rules_dir.resolve()
    cfg, sources = load_update_config(rules_dir)
    zw = cfg.get("zonewarden") or {}
    version = suricata_version or str(zw.get("suricata-version") or DEFAULT_SURICATA_VERSION)
    suricata_conf = rules_dir / str(zw.get("suricata-conf", "suricata.yaml"))
    staging = data_dir / "sources"
    cache = data_dir / "cache"
    state = data_dir / "state"
    output = data_dir / "active"
    for d in (staging, cache, state, output):
        d.mkdir(parents=True, exist_ok=True)

    urls: list[str] = []
    url_source: dict[str, Source] = {}
    for src in sources:
        if src.path is not None:
            archive = staging / f"{src.name}.tar.gz"
            archive.write_bytes(_pack(_source_members(src.path)))
            url = archive.as_uri()
            if offline:
                shutil.copyfile(archive, cache / cache_name(url))
        else:
            assert src.url is not None
            url = src.url
            if offline and not (cache / cache_name(url)).exists():
                raise UserError(
                    f"source {src.name}: offline, and {url} was never downloaded (run online once)"
                )
        urls.append(url)
        url_source[url] = src

    effective: dict[str, Any] = {k: v for k, v in cfg.items() if k != "zonewarden"}
    for key in ("disable-conf", "enable-conf", "modify-conf", "drop-conf"):
        if key in effective:
            effective[key] = str((rules_dir / str(effective[key])).resolve())
    effective["sources"] = urls
    effective["suricata-conf"] = str(suricata_conf)
    effective["cache-directory"] = str(cache)
    effective_path = data_dir / "update.yaml"
    effective_path.write_text(yaml.safe_dump(effective, sort_keys=True), encoding="utf-8")

    cmd = [
        *_suricata_update_command(),
        "-c",
        str(effective_path),
        "--suricata-version",
        version,
        "--suricata-conf",
        str(suricata_conf),
        "--no-test",
        "--no-reload",
        "-D",
        str(state),
        "-o",
        str(output),
        "--offline" if offline else "--force",
    ]
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    text = (proc.stdout or "") + (proc.stderr or "")
    out_file = output / OUTPUT_NAME
    prov_file = output / PROVENANCE_NAME
    result = UpdateResult(proc.returncode, out_file, prov_file, log=text)
    if proc.returncode != 0 or not out_file.is_file():
        if result.returncode == 0:
            result.returncode = 1
        return result

    origin: dict[tuple[int, int], dict[str, Any]] = {}
    for url in urls:
        src = url_source[url]
        cached = cache / cache_name(url)
        if not cached.is_file():
            continue
        for fname, content in _archive_members(cached.read_bytes()):
            parsed, _ = parse_rules_text(content.decode("utf-8", "replace"), fname)
            for r in parsed:
                origin.setdefault(r.key, {"source": src.name, "file": fname, "url": url if src.url else ""})
    records = provenance_records(out_file, origin)
    prov_file.write_text(json.dumps(records, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    result.rules = len(records)
    result.enabled = sum(1 for r in records if r["enabled"])
    result.loaded = sum(1 for r in records if r["status"] == "loaded")
    result.unsupported = sum(1 for r in records if r["status"] == "unsupported")
    result.invalid = sum(1 for r in records if r["status"] == "invalid")
    for rec in records:
        result.by_source[rec["source"]] = result.by_source.get(rec["source"], 0) + 1
    return result


def provenance_records(
    rules_file: Path, origin: dict[tuple[int, int], dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One record per rule of a rules file: provenance, enabled state and engine status."""
    origin = origin or {}
    parsed, errors = parse_rules_text(
        rules_file.read_text(encoding="utf-8", errors="replace"), str(rules_file)
    )
    ruleset = RuleSet.compile(parsed)
    status: dict[tuple[int, int], tuple[str, str]] = {r.parsed.key: ("loaded", "") for r in ruleset.rules}
    for rej in ruleset.rejected:
        if rej.parsed is not None:
            status[rej.parsed.key] = (rej.status, rej.reason)
    records = []
    for r in parsed:
        st, reason = status.get(r.key, ("disabled", "")) if r.enabled else ("disabled", "")
        src = origin.get(r.key, {})
        records.append(
            {
                "gid": r.gid,
                "sid": r.sid,
                "rev": r.rev,
                "msg": r.msg,
                "action": r.action,
                "enabled": r.enabled,
                "status": st,
                "reason": reason,
                "source": src.get("source", "local"),
                "file": src.get("file", Path(r.file).name),
                "url": src.get("url", ""),
            }
        )
    for err in errors:
        records.append(
            {
                "gid": 0,
                "sid": 0,
                "rev": 0,
                "msg": "",
                "action": "",
                "enabled": True,
                "status": "invalid",
                "reason": str(err),
                "source": "",
                "file": Path(str(rules_file)).name,
                "url": "",
            }
        )
    return records


def shipped_records(rules_dir: Path = RULES_DIR) -> list[dict[str, Any]]:
    """Records of the project's own rule files, for ``rules list`` before any update."""
    out: list[dict[str, Any]] = []
    for path in sorted(rules_dir.glob("*.rules")):
        for rec in provenance_records(path):
            rec["source"] = "zonewarden"
            out.append(rec)
    return out


def load_provenance(data_dir: Path) -> list[dict[str, Any]] | None:
    path = data_dir / "active" / PROVENANCE_NAME
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, list) else None


# --- enable.conf / disable.conf --------------------------------------------------------------------


def _conf_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


def _matches_sid(line: str, gid: int, sid: int) -> bool:
    item = line.split("#", 1)[0].strip()
    return item in (str(sid), f"{gid}:{sid}")


def set_enabled(rules_dir: Path, sid: int, enabled: bool, gid: int = 1) -> bool:
    """Move ``gid:sid`` into enable.conf (or disable.conf) and out of the other; True if changed."""
    add_to = rules_dir / ("enable.conf" if enabled else "disable.conf")
    remove_from = rules_dir / ("disable.conf" if enabled else "enable.conf")
    changed = False
    lines = _conf_lines(remove_from)
    kept = [line for line in lines if not _matches_sid(line, gid, sid)]
    if len(kept) != len(lines):
        remove_from.write_text("\n".join(kept) + "\n", encoding="utf-8")
        changed = True
    lines = _conf_lines(add_to)
    if not any(_matches_sid(line, gid, sid) for line in lines):
        lines.append(f"{gid}:{sid}")
        add_to.write_text("\n".join(lines) + "\n", encoding="utf-8")
        changed = True
    return changed


def all_rules(records: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(r["sid"]): r for r in records if r.get("sid")}
