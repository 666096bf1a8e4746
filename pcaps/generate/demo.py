"""The demo plant: the sample captures given plant addresses, a three-zone policy and a small device CA.

The captures in pcaps/ were recorded on the loopback interface, so every packet is 127.0.0.1 <->
127.0.0.1 and a replay of them shows one node. ``tcpprep``/``tcprewrite`` (Debian package tcpreplay)
give the client and the server side of each capture the addresses and MACs of a plant instead: the
protocol traffic is the real recorded traffic, only the addresses differ. With them come a zone/conduit
policy that puts the devices in three zones (so the replay raises real policy alerts: Modbus writes and
an unencrypted OPC UA session where the conduit allows neither) and a device CA that issued three
certificates, one of them revoked.

``make demo`` builds this into ``out/demo/`` and serves it; the dashboard's end-to-end test
(tests/e2e/test_dashboard_e2e.py) builds the same plant into its temporary folder::

    python -m pcaps.generate.demo out/demo [--db out/demo/zonewarden.db]

With ``--db`` the devices also get the names and tags an operator would give them
(``zonewarden assets tag``), which the dashboard and the API show.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

PCAPS: Final = Path(__file__).resolve().parent.parent

# Server ports of the sample captures, so tcpprep knows which side of each connection is the server.
SERVICES: Final = "mbap 502/tcp\nopcua 4840/tcp\nmqtt 1883/tcp\nsecure-mqtt 8883/tcp\n"


@dataclass(frozen=True)
class PlantLink:
    pcap: str
    client: str
    server: str


# Who is who in the plant (zones below): the HMI polls the PLC and reads the OPC UA server, the
# engineering workstation writes to the PLC, line gateways publish telemetry to the DMZ broker.
HMI, EWS, HISTORIAN = "10.10.2.20", "10.10.2.30", "10.10.2.21"
PLC, OPCUA_SERVER, GATEWAY1, GATEWAY2 = "10.10.1.10", "10.10.1.30", "10.10.1.40", "10.10.1.41"
BROKER = "10.10.3.5"
PLANT: Final = (
    PlantLink("modbus-pymodbus-polling.pcap", HMI, PLC),
    PlantLink("modbus-pymodbus-device-id.pcap", HMI, PLC),
    PlantLink("modbus-pymodbus-writes-exceptions.pcap", EWS, PLC),
    PlantLink("opcua-asyncua-none.pcap", HMI, OPCUA_SERVER),
    PlantLink("opcua-asyncua-basic256sha256.pcap", HISTORIAN, OPCUA_SERVER),
    PlantLink("mqtt-v311-mosquitto.pcap", GATEWAY1, BROKER),
    PlantLink("mqtt-v5-mosquitto.pcap", GATEWAY2, BROKER),
    PlantLink("mqtt-tls-mosquitto.pcap", GATEWAY1, BROKER),
)
ASSETS: Final = tuple(sorted({a for link in PLANT for a in (link.client, link.server)}))
ZONES: Final = {"control": "10.10.1.0/24", "scada": "10.10.2.0/24", "dmz": "10.10.3.0/24"}

# What an operator would call the devices (``zonewarden assets tag``): shown by the dashboard and API.
LABELS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    HMI: ("Control room HMI", ("line1", "operator")),
    EWS: ("Engineering workstation", ("engineering",)),
    HISTORIAN: ("Plant historian", ("historian",)),
    PLC: ("Line 1 filler PLC", ("line1", "safety")),
    OPCUA_SERVER: ("Line 1 OPC UA server", ("line1",)),
    GATEWAY1: ("Line 1 telemetry gateway", ("line1", "telemetry")),
    GATEWAY2: ("Line 2 telemetry gateway", ("line2", "telemetry")),
    BROKER: ("Plant MQTT broker", ("dmz",)),
}

POLICY: Final = f"""\
version: 1
site: sample-plant
default: deny
zones:
  - id: control
    name: Control (PLCs, OPC UA server, line gateways)
    security_level: {{target: 3}}
    members: [{ZONES["control"]}]
  - id: scada
    name: Supervision (HMI, engineering, historian)
    security_level: {{target: 2}}
    members: [{ZONES["scada"]}]
  - id: dmz
    name: Plant DMZ (MQTT broker)
    security_level: {{target: 2}}
    members: [{ZONES["dmz"]}]
conduits:
  - id: scada-to-control
    from: scada
    to: control
    allow:
      - protocol: modbus
        functions: [read]
        units: [1, 2]
      - protocol: opcua
        min_security_mode: SignAndEncrypt
  - id: control-to-dmz
    from: control
    to: dmz
    allow:
      - protocol: mqtt
        publish: ["plant/#"]
        subscribe: ["plant/#"]
"""
PKI_PASSPHRASE: Final = "zonewarden demo passphrase\n"


class DemoError(RuntimeError):
    """A tool the demo needs is missing or failed (the message says which and why)."""


@dataclass(frozen=True)
class DemoData:
    """What :func:`build_demo` wrote."""

    out_dir: Path
    captures: tuple[Path, ...]
    policy: Path
    pki_dir: Path
    pki_passphrase_file: Path
    issued: dict[str, str]  # certificate name -> serial (hex)


def mac_of(ip: str) -> str:
    """A locally administered MAC made from the IP (no vendor is implied)."""
    return "02:00:" + ":".join(f"{int(octet):02x}" for octet in ip.split("."))


def _run(args: list[str]) -> None:
    try:
        subprocess.run(args, check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise DemoError(f"{args[0]} is not installed (Debian package tcpreplay; `make setup`)") from None
    except subprocess.CalledProcessError as error:
        raise DemoError(f"{' '.join(args[:2])}... failed: {error.stderr.strip()[-500:]}") from None


def rewrite(link: PlantLink, out: Path, source_dir: Path = PCAPS, prefix: str = "plant-") -> Path:
    """Rewrite one sample capture so its client and server have the plant's addresses and MACs."""
    out.mkdir(parents=True, exist_ok=True)
    services = out / "services"
    if not services.exists():
        services.write_text(SERVICES)
    source = source_dir / link.pcap
    if not source.is_file():
        raise DemoError(f"{source}: sample capture missing (make pcaps)")
    cache = out / f"{source.stem}.cache"
    target = out / f"{prefix}{link.pcap}"
    _run(["tcpprep", "--port", f"--services={services}", "-i", str(source), "-o", str(cache)])
    _run(
        [
            "tcprewrite",
            f"--endpoints={link.client}:{link.server}",
            f"--cachefile={cache}",
            f"--enet-smac={mac_of(link.client)},{mac_of(link.server)}",
            f"--enet-dmac={mac_of(link.server)},{mac_of(link.client)}",
            "--fixcsum",
            "-i",
            str(source),
            "-o",
            str(target),
        ]
    )
    cache.unlink(missing_ok=True)
    return target


def _zonewarden(*args: str) -> str:
    """Run a ``zonewarden`` sub-command in this process; its stdout, or DemoError."""
    from sensor.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    if rc != 0:
        raise DemoError(f"zonewarden {' '.join(args[:2])} failed ({rc}): {err.getvalue().strip()[-500:]}")
    return out.getvalue()


def make_device_pki(work: Path) -> tuple[Path, Path, dict[str, str]]:
    """A device CA with three certificates for the plant, one of them (the gateway's) revoked."""
    from cryptography import x509

    pki = work / "pki"
    passphrase = work / "ca-passphrase"
    passphrase.write_text(PKI_PASSPHRASE)
    passphrase.chmod(0o600)
    common = ["--dir", str(pki), "--passphrase-file", str(passphrase)]
    identity = ["--key", "ecdsa-p256", "--name", "Sample plant", "--org", "zonewarden sample plant"]
    _zonewarden("pki", "init", *common, *identity)
    issued = {}
    for name, profile, subject, sans in (
        (
            "opcua",
            "opcua-app",
            "CN=opcua-server,O=zonewarden sample plant",
            ["ip:" + OPCUA_SERVER, "uri:urn:sample-plant:opcua-server"],
        ),
        ("broker", "mqtt-broker", "CN=broker,O=zonewarden sample plant", ["ip:" + BROKER]),
        ("gateway", "mqtt-client", "CN=line1-gateway,O=zonewarden sample plant", []),
    ):
        pem = work / f"{name}.pem"
        _zonewarden(
            "pki",
            "issue",
            *common,
            "--profile",
            profile,
            "--generate-key",
            "--key-type",
            "ecdsa-p256",
            "--subject",
            subject,
            *[f"--san={s}" for s in sans],
            "--out",
            str(pem),
            "--p12-out",
            str(work / f"{name}.p12"),
            "--p12-passphrase-file",
            str(passphrase),
        )
        issued[name] = format(x509.load_pem_x509_certificate(pem.read_bytes()).serial_number, "x")
    _zonewarden("pki", "revoke", *common, "--serial", issued["gateway"], "--reason", "keyCompromise")
    return pki, passphrase, issued


def label_assets(db: Path) -> None:
    """Give the plant's devices the names and tags in :data:`LABELS` (what ``assets tag`` does)."""
    from sensor.store.sqlite import Store

    store = Store(db)
    try:
        for ip, (name, tags) in LABELS.items():
            store.update_labels(ip, by="demo", name=name, tags=tags)
    finally:
        store.close()


def build_demo(out_dir: Path, db: Path | None = None) -> DemoData:
    """Write the rewritten captures (``plant-*.pcap``), ``policy.yaml`` and ``pki/`` into ``out_dir``
    (the captures and policy are made again; an existing PKI is kept, with its certificates); with
    ``db``, name and tag the devices in that store when it is new."""
    out_dir.mkdir(parents=True, exist_ok=True)
    captures = tuple(rewrite(link, out_dir) for link in PLANT)
    (out_dir / "services").unlink(missing_ok=True)
    policy = out_dir / "policy.yaml"
    policy.write_text(POLICY)
    pki_dir, passphrase = out_dir / "pki", out_dir / "ca-passphrase"
    issued: dict[str, str] = {}
    if not (pki_dir.is_dir() and passphrase.is_file()):
        shutil.rmtree(pki_dir, ignore_errors=True)
        pki_dir, passphrase, issued = make_device_pki(out_dir)
    if db is not None and not db.exists():  # a store kept from an earlier demo keeps what people changed
        label_assets(db)
    return DemoData(out_dir, captures, policy, pki_dir, passphrase, issued)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the demo plant into (e.g. out/demo)")
    parser.add_argument("--db", type=Path, help="also name and tag the plant's devices in this store")
    args = parser.parse_args(argv)
    try:
        data = build_demo(args.out, args.db)
    except DemoError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 1
    print(f"demo plant in {data.out_dir}: {len(data.captures)} captures, {len(ASSETS)} devices, 3 zones")
    return 0


if __name__ == "__main__":
    sys.exit(main())
