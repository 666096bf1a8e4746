"""The sensor's YAML configuration file (``--config FILE``).

One mapping with one section per concern, so later sections (``policy``, ``store``, ``api``...) are
added beside the others without touching them; an unknown top-level section is an error, so a typo
never silently switches a feature off::

    version: 1
    rules:
      paths: [rules/]                       # *.rules files or directories (relative to this file)
      vars: {HOME_NET: "[10.0.0.0/8]"}
    outputs:
      outbox: outbox.db                     # on-disk queue of alerts waiting for a sink
      outbox_max: 100000                    # rows; past it the oldest are dropped (counted)
      allow_loopback: false                 # refuse 127.0.0.0/8 and ::1 sink hosts unless true
      sinks:
        - {name: soc-json, type: syslog, url: "syslog+tls://siem.plant:6514", format: json, ca_file: ca.pem}
        - {name: soc-cef, type: syslog, url: "syslog://10.0.0.5:514", format: cef}
        - {name: hook, type: webhook, url: "https://soar.plant/hooks/zw", secret_env: ZW_HOOK_SECRET}
        - {name: alerts-file, type: eve, path: alerts.json}

Sink URLs are checked when the file is loaded (hostile input A14): only ``http``/``https`` for
webhooks and ``syslog``/``syslog+udp``/``syslog+tcp``/``syslog+tls`` for syslog; never a cloud
metadata address (169.254.169.254, fd00:ec2::254, metadata.google.internal, any link-local address);
loopback only when ``allow_loopback`` says so. A bad file is refused with ``file: where: what``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sensor.errors import UserError

SECTIONS = frozenset({"version", "rules", "outputs"})
SINK_TYPES = frozenset({"eve", "syslog", "webhook"})
WEBHOOK_SCHEMES = frozenset({"http", "https"})
SYSLOG_SCHEMES = frozenset({"syslog", "syslog+udp", "syslog+tcp", "syslog+tls"})
METADATA_HOSTS = frozenset(
    {
        "169.254.169.254",
        "fd00:ec2::254",
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "100.100.100.200",  # Alibaba Cloud metadata
    }
)


class ConfigError(UserError):
    """The configuration file is refused; the message says where and why."""


@dataclass(frozen=True, slots=True)
class SinkConfig:
    name: str
    type: str
    url: str = ""
    path: str = ""
    format: str = "json"
    facility: str = "local0"
    ca_file: str | None = None
    secret: str | None = None
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class OutputsConfig:
    sinks: tuple[SinkConfig, ...] = ()
    outbox: str = "outbox.db"
    outbox_max: int = 100_000
    allow_loopback: bool = False
    retry_base: float = 1.0
    retry_max: float = 300.0


@dataclass(frozen=True, slots=True)
class RulesConfig:
    paths: tuple[str, ...] = ()
    vars: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Config:
    path: str = ""
    rules: RulesConfig = RulesConfig()
    outputs: OutputsConfig = OutputsConfig()


def check_sink_url(url: str, kind: str, allow_loopback: bool = False) -> str:
    """Refuse URLs a sink must never reach (A14); returns the URL when it is acceptable."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        _ = parts.port  # a bad port raises here
    except ValueError as exc:
        raise ValueError(f"malformed URL {url!r}") from exc
    allowed = WEBHOOK_SCHEMES if kind == "webhook" else SYSLOG_SCHEMES
    if parts.scheme.lower() not in allowed:
        raise ValueError(
            f"scheme {parts.scheme or '(none)'!r} is not allowed for {kind} (use {sorted(allowed)})"
        )
    if not host:
        raise ValueError(f"URL {url!r} has no host")
    if host in METADATA_HOSTS:
        raise ValueError(f"{host} is a cloud metadata address")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
        if host == "localhost" and not allow_loopback:
            raise ValueError("loopback sink hosts need outputs.allow_loopback: true") from None
    if ip is not None:
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip.is_link_local or str(ip) in METADATA_HOSTS:
            raise ValueError(f"{ip} is a link-local / metadata address")
        if ip.is_unspecified or ip.is_multicast:
            raise ValueError(f"{ip} cannot be a sink host")
        if ip.is_loopback and not allow_loopback:
            raise ValueError("loopback sink hosts need outputs.allow_loopback: true")
    return url


def _sink(raw: Any, where: str, base: Path, allow_loopback: bool) -> SinkConfig:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a sink is a mapping")
    kind = raw.get("type")
    if kind not in SINK_TYPES:
        raise ValueError(f"{where}: type must be one of {sorted(SINK_TYPES)}, got {kind!r}")
    known = {
        "name",
        "type",
        "url",
        "path",
        "format",
        "facility",
        "ca_file",
        "secret",
        "secret_env",
        "timeout",
    }
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    name = str(raw.get("name") or f"{kind}-{where.rsplit('[', 1)[-1].rstrip(']')}")
    url = str(raw.get("url", ""))
    path = str(raw.get("path", ""))
    if kind == "eve":
        if not path:
            raise ValueError(f"{where}: an eve sink needs a path")
        path = str((base / path) if not Path(path).is_absolute() else Path(path))
    else:
        if not url:
            raise ValueError(f"{where}: a {kind} sink needs a url")
        try:
            check_sink_url(url, kind, allow_loopback)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    fmt = str(raw.get("format", "json"))
    if fmt not in ("json", "cef"):
        raise ValueError(f"{where}: format must be json or cef")
    facility = str(raw.get("facility", "local0"))
    secret = raw.get("secret")
    if raw.get("secret_env"):
        secret = os.environ.get(str(raw["secret_env"]))
        if not secret:
            raise ValueError(f"{where}: environment variable {raw['secret_env']} is not set")
    ca_file = raw.get("ca_file")
    if ca_file is not None and not Path(str(ca_file)).is_absolute():
        ca_file = str(base / str(ca_file))
    try:
        timeout = float(raw.get("timeout", 5.0))
    except (TypeError, ValueError):
        raise ValueError(f"{where}: timeout must be a number") from None
    from sensor.outputs.syslog import FACILITIES

    if kind == "syslog" and facility not in FACILITIES:
        raise ValueError(f"{where}: unknown facility {facility!r}")
    return SinkConfig(
        name=name,
        type=kind,
        url=url,
        path=path,
        format=fmt,
        facility=facility,
        ca_file=None if ca_file is None else str(ca_file),
        secret=None if secret is None else str(secret),
        timeout=timeout,
    )


def parse_config(data: Any, source: str = "<config>", base: Path | None = None) -> Config:
    base = base or Path(".")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the configuration must be a mapping")
    try:
        unknown = set(data) - SECTIONS
        if unknown:
            raise ValueError(f"unknown sections {sorted(unknown)} (known: {sorted(SECTIONS)})")
        if data.get("version", 1) != 1:
            raise ValueError(f"version must be 1, got {data.get('version')!r}")
        rules_raw = data.get("rules") or {}
        if not isinstance(rules_raw, dict):
            raise ValueError("rules: must be a mapping")
        paths = rules_raw.get("paths", [])
        if isinstance(paths, str):
            paths = [paths]
        variables = rules_raw.get("vars") or {}
        if not isinstance(variables, dict):
            raise ValueError("rules.vars: must be a mapping")
        rules = RulesConfig(
            paths=tuple(str(p if Path(str(p)).is_absolute() else base / str(p)) for p in paths),
            vars={str(k): str(v) for k, v in variables.items()},
        )
        out_raw = data.get("outputs") or {}
        if not isinstance(out_raw, dict):
            raise ValueError("outputs: must be a mapping")
        allow_loopback = bool(out_raw.get("allow_loopback", False))
        sinks_raw = out_raw.get("sinks") or []
        if not isinstance(sinks_raw, list):
            raise ValueError("outputs.sinks: must be a list")
        sinks = tuple(_sink(s, f"outputs.sinks[{i}]", base, allow_loopback) for i, s in enumerate(sinks_raw))
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError("outputs.sinks: sink names must be unique")
        outbox = str(out_raw.get("outbox", "outbox.db"))
        outputs = OutputsConfig(
            sinks=sinks,
            outbox=outbox if Path(outbox).is_absolute() else str(base / outbox),
            outbox_max=int(out_raw.get("outbox_max", 100_000)),
            allow_loopback=allow_loopback,
            retry_base=float(out_raw.get("retry_base", 1.0)),
            retry_max=float(out_raw.get("retry_max", 300.0)),
        )
        if outputs.outbox_max < 1:
            raise ValueError("outputs.outbox_max must be at least 1")
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return Config(path=source, rules=rules, outputs=outputs)


def load_config(path: Path | str) -> Config:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: {exc.strerror or exc}") from None
    import yaml  # here, not at the top: every replay imports this module, few give --config

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_config(data, str(p), p.parent)


def apply_config_args(sensor_config: Any, args: Any) -> Any:
    """``--config FILE`` and ``--rules PATH`` (replay, sniff) applied to a ``SensorConfig``.

    Rules named on the command line come after those of the file. Without either flag the
    configuration is returned unchanged, so ``zonewarden replay`` behaves as before.
    """
    import dataclasses

    config_path = getattr(args, "config", None)
    cli_rules = [Path(p) for p in getattr(args, "rules", None) or []]
    if not config_path and not cli_rules:
        return sensor_config
    cfg = load_config(config_path) if config_path else Config()
    paths = [Path(p) for p in cfg.rules.paths] + cli_rules
    for p in paths:
        if not p.exists():
            raise ConfigError(f"{p}: no such rules file or directory")
    return dataclasses.replace(
        sensor_config,
        rule_paths=tuple(paths),
        rule_vars=tuple(sorted(cfg.rules.vars.items())),
        outputs=cfg.outputs if cfg.outputs.sinks else None,
    )
