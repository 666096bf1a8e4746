"""Coverage-guided fuzz targets (atheris, libFuzzer) for everything that reads hostile input (DESIGN.md §8).

The hypothesis tests beside this file run in every ``make test``; these targets are for long runs that
search for what hypothesis's random draws miss. Each target says what may escape it: the project's own
error for that input (``CaptureError`` from the capture reader, ``PolicyError`` from the policy loader;
the rules parser reports a bad line rather than raising) and nothing else. Anything else that escapes, and
any hang or memory blow-up libFuzzer sees, is a defect.

Usage (``make fuzz`` runs every target for ``FUZZ_SECONDS`` each)::

    python tests/fuzz/atheris_targets.py TARGET [--seeds DIR] [libFuzzer options] [CORPUS_DIR ...]

``--seeds DIR`` fills DIR (a scratch directory: never commit it, the public captures stay out of the
repository) with seed inputs cut from the project's own captures in pcaps/ and, when ../shared is beside
the checkout, the public captures there, and appends it to the corpus directories. libFuzzer writes a
crash as ``crash-<sha1>`` in the working directory; replay it with
``python tests/fuzz/atheris_targets.py TARGET crash-<sha1>``.

Targets:
  capture   bytes as a capture file (pcap, pcapng, gzip of either): the reader, record by record
  pipeline  bytes as the records of an Ethernet pcap: the whole sensor, with every native dissector,
            the inventory, a zone/conduit policy, the project's rules and anomaly learning
  modbus, opcua, mqtt, tls
            bytes cut into segments of either direction, fed to one dissector session (and its probe)
  rules     bytes as a rules file: the Suricata-format parser and the engine's compiler
  policy    bytes as a policy YAML file: the loader and the policy compiler
"""

from __future__ import annotations

import argparse
import io
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import atheris

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

with atheris.instrument_imports(include=["sensor", "policy", "rules"]):
    from policy.index import CompiledPolicy
    from policy.load import PolicyError, parse_policy
    from rules.engine import RuleSet
    from rules.parse import parse_rules_text
    from sensor.capture.file import FileSource
    from sensor.decode import Decoder
    from sensor.dissectors.base import Dissector
    from sensor.dissectors.modbus import ModbusDissector
    from sensor.dissectors.mqtt import MqttDissector
    from sensor.dissectors.opcua import OpcUaDissector
    from sensor.dissectors.tls import TlsDissector
    from sensor.errors import CaptureError
    from sensor.limits import Limits
    from sensor.records import PROTO_TCP, FlowRef
    from sensor.runtime import Sensor, SensorConfig

# Small caps, so that a fuzzer reaches every "limit exceeded" branch and memory stays small.
LIMITS = Limits(
    max_record_bytes=64 * 1024,
    max_fragment_trains=16,
    max_fragment_bytes=16 * 1024,
    max_flows=64,
    emergency_flows=48,
    max_stream_buffer=8192,
    max_reassembly_bytes=32 * 1024,
    max_segments_per_direction=32,
    gap_wait_bytes=4096,
    max_pending_transactions=32,
    max_assets=64,
)

SEED_BYTES = 64 * 1024  # seeds are cut to this, so that each run stays quick

# pcap global header, microsecond timestamps, little-endian, Ethernet (DLT 1)
PCAP_ETHERNET_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)

# Every address in one zone or the other, so that every operation is judged by a conduit.
POLICY = """
version: 1
default: deny
zones:
  - id: low
    members: [0.0.0.0/1, "::/1"]
  - id: high
    members: [128.0.0.0/1, "8000::/1"]
conduits:
  - id: low-to-high
    from: low
    to: high
    allow:
      - protocol: modbus
        functions: [read, write_single_register]
        units: [1, 2]
        addresses: {holding_registers: "0-99", coils: "0-15"}
      - protocol: opcua
        services: [Read, Browse]
      - protocol: mqtt
        publish: ["plant/#"]
        subscribe: ["plant/#"]
  - id: high-to-low
    from: high
    to: low
    allow:
      - protocol: modbus
        functions: [read]
"""


def pipeline_sensor_config(tmp: Path) -> SensorConfig:
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    return SensorConfig(
        limits=LIMITS,
        policy_path=policy,
        learn_for=0.5,  # a short learning window, so that detection runs within one input
        rule_paths=tuple(sorted((REPO / "rules").glob("*.rules"))),
    )


# --- targets ----------------------------------------------------------------------------------------


def fuzz_capture(data: bytes) -> None:
    try:
        source = FileSource("<fuzz>", io.BytesIO(data), LIMITS)
        try:
            for _frame in source.frames():
                pass
        finally:
            source.close()
    except CaptureError:
        pass


def make_pipeline_target(config: SensorConfig) -> Callable[[bytes], None]:
    def fuzz_pipeline(data: bytes) -> None:
        sensor = Sensor(config)
        source = FileSource("<fuzz>", io.BytesIO(PCAP_ETHERNET_HEADER + data), LIMITS)
        try:
            sensor.run_source(source)
        except CaptureError:
            pass
        sensor.finish()

    return fuzz_pipeline


FLOW = FlowRef(1, "1:fuzz", "tcp", "10.0.0.1", 40000, "10.0.0.2", 502)


def segments(data: bytes) -> Iterator[tuple[bool, bytes]]:
    """Cut ``data`` into segments: each is a byte (direction in bit 7, length in the rest) and the data."""
    provider = atheris.FuzzedDataProvider(data)
    while provider.remaining_bytes():
        head = provider.ConsumeInt(1)
        yield bool(head & 0x80), provider.ConsumeBytes((head & 0x7F) * 4 + 1)


def make_session_target(dissector: Dissector) -> Callable[[bytes], None]:
    def fuzz_session(data: bytes) -> None:
        session = dissector.session(FLOW, LIMITS)
        ts = 0.0
        for to_server, chunk in segments(data):
            dissector.probe(chunk, to_server)
            session.feed(chunk, to_server, ts)
            ts += 0.25
        session.gap(True, 10, ts)
        session.feed(data[-64:], True, ts)
        session.close(ts + 1)

    return fuzz_session


def fuzz_rules(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    rules, errors = parse_rules_text(text, "<fuzz>")  # a bad line is reported, not raised
    RuleSet.compile(rules, None, errors)


def fuzz_policy(data: bytes) -> None:
    try:
        policy = parse_policy(data.decode("utf-8", "replace"), "<fuzz>")
    except PolicyError:
        return
    CompiledPolicy(policy)


# --- seeds ------------------------------------------------------------------------------------------


def capture_files() -> list[Path]:
    files = sorted((REPO / "pcaps").glob("*.pcap*"))
    public = REPO.parent / "shared" / "pcaps" / "public"
    if public.is_dir():
        files += sorted(p for p in public.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap", ".gz"))
    return files


def pcap_ethernet_records(path: Path, limit: int = SEED_BYTES) -> bytes | None:
    """The records of a little-endian microsecond Ethernet pcap (the body after its global header)."""
    head = path.read_bytes()[: limit + 24]
    if len(head) < 24 or head[:4] != PCAP_ETHERNET_HEADER[:4] or struct.unpack_from("<I", head, 20)[0] != 1:
        return None
    return head[24:]


def session_seed(path: Path, app_port: int) -> bytes:
    """The TCP payloads to and from ``app_port`` in ``path`` (as the decoder splits them off, in arrival
    order), framed as :func:`segments` reads them back."""
    decoder = Decoder(LIMITS)
    sensor_input = bytearray()
    source = FileSource(str(path), io.BytesIO(path.read_bytes()), LIMITS)
    try:
        for frame in source.frames():
            packet = decoder.decode(frame)
            if packet is None or packet.proto != PROTO_TCP or app_port not in (packet.sport, packet.dport):
                continue
            payload = packet.payload
            while payload:
                length_code = min((len(payload) - 1) // 4, 0x7F)  # the segment is length_code * 4 + 1 bytes
                size = length_code * 4 + 1
                sensor_input.append((0x80 if packet.dport == app_port else 0) | length_code)
                sensor_input += payload[:size]
                payload = payload[size:]
            if len(sensor_input) > SEED_BYTES:
                break
    except CaptureError:
        pass
    finally:
        source.close()
    return bytes(sensor_input)


SESSION_PORTS = {"modbus": 502, "opcua": 4840, "mqtt": 1883, "tls": 8883}


def write_seeds(target: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, path in enumerate(capture_files()):
        if target == "capture":
            seed: bytes | None = path.read_bytes()[:SEED_BYTES]
        elif target == "pipeline":
            seed = pcap_ethernet_records(path)
        elif target in SESSION_PORTS:
            seed = session_seed(path, SESSION_PORTS[target]) or None
        else:
            seed = None
        if seed:
            (directory / f"seed-{index:03d}").write_bytes(seed)
            count += 1
    if target == "rules":
        for index, path in enumerate(sorted((REPO / "rules").glob("*.rules"))):
            (directory / f"seed-rules-{index}").write_bytes(path.read_bytes())
            count += 1
    if target == "policy":
        (directory / "seed-policy").write_text(POLICY)
        count += 1
    return count


def build_target(name: str, tmp: Path) -> Callable[[bytes], None]:
    if name == "capture":
        return fuzz_capture
    if name == "pipeline":
        return make_pipeline_target(pipeline_sensor_config(tmp))
    if name == "rules":
        return fuzz_rules
    if name == "policy":
        return fuzz_policy
    dissectors: dict[str, Dissector] = {
        "modbus": ModbusDissector(),
        "opcua": OpcUaDissector(),
        "mqtt": MqttDissector(),
        "tls": TlsDissector(),
    }
    return make_session_target(dissectors[name])


TARGETS = ("capture", "pipeline", "modbus", "opcua", "mqtt", "tls", "rules", "policy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--seeds", type=Path, help="write seed inputs here and fuzz from them")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/zonewarden-fuzz"))
    args, libfuzzer_args = parser.parse_known_args()
    if args.seeds is not None:
        write_seeds(args.target, args.seeds)
        libfuzzer_args.append(str(args.seeds))
    args.workdir.mkdir(parents=True, exist_ok=True)
    target = build_target(args.target, args.workdir)
    atheris.Setup([sys.argv[0], *libfuzzer_args], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
