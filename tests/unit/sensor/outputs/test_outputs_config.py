"""The configuration file: sinks and their options; refused URLs (hostile input A14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor.config import ConfigError, check_sink_url, load_config, parse_config


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/", "webhook"),
        ("http://[fd00:ec2::254]/", "webhook"),
        ("http://metadata.google.internal/computeMetadata/v1/", "webhook"),
        ("http://169.254.1.1/", "webhook"),
        ("http://[::ffff:169.254.169.254]/", "webhook"),
        ("file:///etc/passwd", "webhook"),
        ("gopher://evil:70/", "webhook"),
        ("ftp://x/", "webhook"),
        ("http://127.0.0.1:8080/", "webhook"),
        ("http://localhost/", "webhook"),
        ("syslog://[::1]:514", "syslog"),
        ("https://siem.example/", "syslog"),
        ("http:///nohost", "webhook"),
    ],
)
def test_A14_sink_url_refused(url: str, kind: str) -> None:
    with pytest.raises(ValueError):
        check_sink_url(url, kind)


def test_loopback_only_when_allowed() -> None:
    assert check_sink_url("http://127.0.0.1:8080/h", "webhook", allow_loopback=True)
    with pytest.raises(ValueError):
        check_sink_url("http://169.254.169.254/", "webhook", allow_loopback=True)


def test_A14_refused_at_load_with_where(tmp_path: Path) -> None:
    path = tmp_path / "zw.yaml"
    path.write_text("outputs:\n  sinks:\n    - {type: webhook, url: 'http://169.254.169.254/'}\n")
    with pytest.raises(
        ConfigError, match=r"zw.yaml: outputs.sinks\[0\]: 169.254.169.254 is a cloud metadata"
    ):
        load_config(path)


def test_full_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZW_SECRET", "s3cret")
    path = tmp_path / "zw.yaml"
    path.write_text(
        """
version: 1
rules: {paths: [rules/], vars: {HOME_NET: "[10.0.0.0/8]"}}
outputs:
  outbox: box.db
  outbox_max: 50
  sinks:
    - {name: json, type: syslog, url: "syslog+tls://siem.plant:6514", ca_file: ca.pem}
    - {name: cef, type: syslog, url: "syslog://10.0.0.5", format: cef, facility: local3}
    - {name: hook, type: webhook, url: "https://soar.plant/hook", secret_env: ZW_SECRET}
    - {name: file, type: eve, path: alerts.json}
"""
    )
    cfg = load_config(path)
    assert cfg.rules.paths == (str(tmp_path / "rules"),) and cfg.rules.vars == {"HOME_NET": "[10.0.0.0/8]"}
    assert [s.name for s in cfg.outputs.sinks] == ["json", "cef", "hook", "file"]
    assert cfg.outputs.sinks[0].ca_file == str(tmp_path / "ca.pem")
    assert cfg.outputs.sinks[2].secret == "s3cret"
    assert cfg.outputs.outbox == str(tmp_path / "box.db") and cfg.outputs.outbox_max == 50


@pytest.mark.parametrize(
    "data",
    [
        {"polcy": {}},  # typo in a section name
        {"version": 2},
        {"outputs": {"sinks": [{"type": "smtp", "url": "x"}]}},
        {"outputs": {"sinks": [{"type": "syslog", "url": "syslog://10.0.0.1", "format": "leef"}]}},
        {"outputs": {"sinks": [{"type": "syslog", "url": "syslog://10.0.0.1", "colour": "red"}]}},
        {"outputs": {"sinks": [{"type": "eve"}]}},
        {
            "outputs": {
                "sinks": [{"type": "webhook", "url": "https://a/", "secret_env": "ZW_NOT_SET_ANYWHERE"}]
            }
        },
        {"outputs": {"outbox_max": 0}},
        [1, 2],
    ],
)
def test_bad_configs_refused(data: object) -> None:
    with pytest.raises(ConfigError):
        parse_config(data)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("outputs:\n  sinks: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(path)
