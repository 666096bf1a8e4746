# mypy: disallow-untyped-calls=False
"""Generate the attack captures in pcaps/ from real stacks on the loopback: normal traffic, then an attack.

Every capture starts with ``LEARN_S`` seconds of normal traffic at a fast rate (so a short learning
window holds many cycles: polling every ``POLL_S`` seconds), then the attack while the normal traffic
goes on for ``ATTACK_S`` seconds. Times are the real ones: nothing is rewritten.

Each capture is stored gzip-compressed (``attack-*.pcap.gz``, about a quarter of the size: ten seconds
of fast polling repeat the same few frames): tcpdump records a plain pcap next to it, which is then
compressed with a fixed header (no file name, mtime 0) and removed. zonewarden and tshark read the
``.pcap.gz`` as it is; ``gunzip -k`` gives the plain pcap for tools that need one (tcprewrite).

Modbus (pymodbus 3.x server on 127.0.0.1:502 with units 1 and 2, from ``modbus_gen``): the master
127.0.0.1 polls FC3 holding 0-9 of unit 1 and FC4 input 4-11 of unit 2, and writes holding register 5
of unit 1 (values 100, 101, 102) once a second; an I/O gateway 127.0.0.4 writes the measured value of a
process (around 500, a few counts of noise) into holding register 7 of unit 1 every cycle. Attackers
use other loopback addresses (the whole 127/8 is loopback on Linux) with pymodbus clients, except the
scanners, which send raw MBAP frames from a socket as scanning tools do.

MQTT (mosquitto + paho from ``mqtt_gen``): ``line1-plc`` publishes ``plant/line1/telemetry`` every
cycle, ``line1-hmi`` subscribes to it and ``line1-ctl`` publishes ``plant/line1/cmd/valve`` now and
then.

Run (root: tcpdump and port 502): ``.venv/bin/python -m pcaps.generate.attacks_gen [--out pcaps/] [names]``
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import random
import socket
import struct
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusTcpServer

from pcaps.generate import mqtt_gen
from pcaps.generate.modbus_gen import BLOCK, HOST, IDENTITY, PORT, UNITS
from pcaps.generate.record import generator_main, recording

log = logging.getLogger("attacks_gen")

LEARN_S = 6.0  # normal traffic before the attack
ATTACK_S = 4.0  # normal traffic goes on this long after the attack starts
POLL_S = 0.1
MASTER = HOST
GATEWAY = "127.0.0.4"
ATTACKER = "127.0.0.2"
PROCESS_REGISTER = 7
SETPOINT_REGISTER = 5


def _context() -> ModbusServerContext:
    devices: dict[int, Any] = {}
    for unit in UNITS:
        devices[unit] = ModbusDeviceContext(
            di=ModbusSequentialDataBlock(1, [i % 2 for i in range(BLOCK)]),
            co=ModbusSequentialDataBlock(1, [int(i % 3 == 0) for i in range(BLOCK)]),
            hr=ModbusSequentialDataBlock(1, [unit * 1000 + i for i in range(BLOCK)]),
            ir=ModbusSequentialDataBlock(1, [unit * 100 + i for i in range(BLOCK)]),
        )
    return ModbusServerContext(devices=devices, single=False)


async def _client(source: str, timeout: float = 1.0) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(HOST, port=PORT, timeout=timeout, retries=0, source_address=(source, 0))
    for _ in range(50):
        if await client.connect():
            return client
        await asyncio.sleep(0.1)
    raise RuntimeError(f"pymodbus server did not accept {source}")


class Plant:
    """The normal traffic: master polling and setpoint writes, the I/O gateway's process value."""

    def __init__(self) -> None:
        self.poll_unit2 = True
        self.ramp_per_s = 0.0  # process value drift injected by the attack scenario
        self.stop = asyncio.Event()
        self.rng = random.Random(7)

    async def master(self) -> None:
        client = await _client(MASTER)
        try:
            n = 0
            while not self.stop.is_set():
                if n % 10 == 0:  # setpoint 100, 101, 102, 100... once a second
                    await client.write_register(SETPOINT_REGISTER, 100 + (n // 10) % 3, device_id=1)
                await client.read_holding_registers(0, count=10, device_id=1)
                if self.poll_unit2:
                    await client.read_input_registers(4, count=8, device_id=2)
                n += 1
                await asyncio.sleep(POLL_S)
        finally:
            client.close()

    async def gateway(self) -> None:
        client = await _client(GATEWAY)
        started = time.monotonic()
        ramp_from: float | None = None
        try:
            while not self.stop.is_set():
                value = 500 + self.rng.randint(-3, 3)
                if self.ramp_per_s:
                    ramp_from = ramp_from or time.monotonic()
                    value += int(self.ramp_per_s * (time.monotonic() - ramp_from))
                await client.write_register(PROCESS_REGISTER, value, device_id=1)
                await asyncio.sleep(POLL_S)
        finally:
            client.close()
            log.debug("gateway ran %.1f s", time.monotonic() - started)


def _mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    """MODBUS Messaging on TCP/IP v1.0b §3.1.3: transaction id, protocol id 0, length, unit id."""
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


def _raw_probe(source: str, frames: list[bytes], wait: float = 0.05) -> None:
    """Send MBAP frames one by one from ``source`` (as a scanner does), reading whatever comes back."""
    with socket.create_connection((HOST, PORT), timeout=2, source_address=(source, 0)) as s:
        s.settimeout(wait)
        for frame in frames:
            s.sendall(frame)
            with contextlib.suppress(TimeoutError, OSError):
                s.recv(512)


Attack = Callable[[Plant], Awaitable[None]]


async def unit_id_scan(plant: Plant) -> None:
    frames = [_mbap(i, unit, struct.pack(">BHH", 3, 0, 1)) for i, unit in enumerate(range(3, 21), 1)]
    await asyncio.to_thread(_raw_probe, ATTACKER, frames)


async def function_code_scan(plant: Plant) -> None:
    # well-formed requests (MODBUS v1.1b3 §6.7, §6.9, §6.10, §6.13, §6.14, §6.18), then unassigned codes
    pdus = [b"\x07", b"\x0b", b"\x0c", b"\x11", b"\x14\x07\x06\x00\x01\x00\x00\x00\x01", b"\x18\x00\x00"]
    pdus += [bytes([fc]) for fc in (41, 42, 65, 100)]
    frames = [_mbap(i, 1, pdu) for i, pdu in enumerate(pdus, 1)]
    await asyncio.to_thread(_raw_probe, MASTER, frames)


async def write_burst(plant: Plant) -> None:
    client = await _client(MASTER)
    try:
        for i in range(40):
            await client.write_register(SETPOINT_REGISTER, 100 + i % 3, device_id=1)
    finally:
        client.close()


async def new_host_write(plant: Plant) -> None:
    client = await _client(ATTACKER)
    try:
        await client.write_registers(50, [9999] * 10, device_id=1)
        await client.write_registers(60, [1] * 5, device_id=1)
    finally:
        client.close()


async def force_listen_only(plant: Plant) -> None:
    client = await _client(ATTACKER)
    try:
        await client.diag_force_listen_only(device_id=1)
        await asyncio.sleep(0.2)
    finally:
        client.close()


async def polling_stop(plant: Plant) -> None:
    plant.poll_unit2 = False


async def process_drift(plant: Plant) -> None:
    plant.ramp_per_s = 10.0


MODBUS_ATTACKS: dict[str, tuple[Attack, str]] = {
    "attack-modbus-unit-id-scan.pcap.gz": (unit_id_scan, "127.0.0.2 reads unit ids 3-20 (raw frames)"),
    "attack-modbus-function-code-scan.pcap.gz": (
        function_code_scan,
        "the master's host sends FC 7, 11, 12, 17, 20, 24, 41, 42, 65, 100 to unit 1 (raw frames)",
    ),
    "attack-modbus-write-burst.pcap.gz": (
        write_burst,
        "the master writes register 5 forty times back to back",
    ),
    "attack-modbus-new-host-write.pcap.gz": (
        new_host_write,
        "127.0.0.2 writes holding 50-59 = 9999 and 60-64",
    ),
    "attack-modbus-force-listen-only.pcap.gz": (force_listen_only, "127.0.0.2 sends FC 8 sub-function 4"),
    "attack-modbus-polling-stop.pcap.gz": (polling_stop, "the master stops polling unit 2"),
    "attack-modbus-process-drift.pcap.gz": (process_drift, "holding register 7 ramps up 10 counts/s"),
}


async def _run_modbus(attack: Attack) -> None:
    identity = ModbusDeviceIdentification(info_name=IDENTITY)
    server = ModbusTcpServer(_context(), identity=identity, address=(HOST, PORT))
    task = asyncio.create_task(server.serve_forever())
    try:
        await asyncio.sleep(0.3)
        plant = Plant()
        gateway = asyncio.create_task(plant.gateway())
        await asyncio.sleep(0.3)  # the process value is in place before the master's first read
        workers = [gateway, asyncio.create_task(plant.master())]
        await asyncio.sleep(LEARN_S)
        await attack(plant)
        await asyncio.sleep(ATTACK_S)
        plant.stop.set()
        await asyncio.gather(*workers)
        await asyncio.sleep(0.2)
    finally:
        await server.shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- MQTT ------------------------------------------------------------------------------------------


def _mqtt_client(client_id: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.username_pw_set(mqtt_gen.USER, mqtt_gen.PASSWORD)
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(mqtt_gen.HOST, mqtt_gen.PLAIN_PORT, keepalive=30)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"{client_id}: no CONNACK")
    return c


def _mqtt_plant(stop: threading.Event) -> None:
    plc = _mqtt_client("line1-plc")
    hmi = _mqtt_client("line1-hmi")
    ctl = _mqtt_client("line1-ctl")
    hmi.subscribe("plant/line1/telemetry", qos=1)
    rng = random.Random(11)
    n = 0
    try:
        while not stop.is_set():
            plc.publish("plant/line1/telemetry", f'{{"temp": {21 + rng.randint(0, 9) / 10:.1f}}}', qos=0)
            if n % 10 == 0:
                ctl.publish("plant/line1/cmd/valve", "open" if n % 20 == 0 else "close", qos=1)
            n += 1
            time.sleep(POLL_S)
    finally:
        for c in (plc, hmi, ctl):
            c.disconnect()
            c.loop_stop()


def mqtt_wildcard() -> None:
    spy = _mqtt_client("diag-tool")
    spy.subscribe("#", qos=0)
    time.sleep(1.0)
    spy.disconnect()
    spy.loop_stop()


def mqtt_new_command_publisher() -> None:
    rogue = _mqtt_client("maint-laptop")
    info = rogue.publish("plant/line1/cmd/valve", "open", qos=1)
    info.wait_for_publish(5)
    time.sleep(0.3)
    rogue.disconnect()
    rogue.loop_stop()


MQTT_ATTACKS: dict[str, tuple[Callable[[], None], str]] = {
    "attack-mqtt-wildcard-subscriber.pcap.gz": (mqtt_wildcard, "new client diag-tool subscribes to #"),
    "attack-mqtt-new-command-publisher.pcap.gz": (
        mqtt_new_command_publisher,
        "new client maint-laptop publishes plant/line1/cmd/valve",
    ),
}


def _run_mqtt(attack: Callable[[], None]) -> None:
    stop = threading.Event()
    plant = threading.Thread(target=_mqtt_plant, args=(stop,))
    plant.start()
    try:
        time.sleep(LEARN_S)
        attack()
        time.sleep(ATTACK_S)
    finally:
        stop.set()
        plant.join()


@contextlib.contextmanager
def recording_gzipped(path: Path, bpf: str) -> Iterator[Path]:
    """Record like :func:`recording` into the plain pcap beside ``path`` (``X.pcap`` for ``X.pcap.gz``),
    then write it gzip-compressed to ``path`` and remove the plain one (also when the block fails)."""
    plain = path.with_suffix("")
    try:
        with recording(plain, bpf):
            yield path
        # a fixed gzip header (no name, mtime 0): the same capture always gives the same bytes
        with path.open("wb") as out, gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
            gz.write(plain.read_bytes())
    finally:
        plain.unlink(missing_ok=True)


def generate(out_dir: Path, names: list[str] | None = None) -> list[Path]:
    written: list[Path] = []
    for name, (attack, _what) in MODBUS_ATTACKS.items():
        if names and name not in names:
            continue
        path = out_dir / name
        with recording_gzipped(path, f"tcp port {PORT}"):
            asyncio.run(_run_modbus(attack))
        written.append(path)
    wanted = [n for n in MQTT_ATTACKS if not names or n in names]
    if wanted:
        with tempfile.TemporaryDirectory(prefix="zw-attacks-") as tmp:
            folder = Path(tmp)
            broker = mqtt_gen.start_broker(folder, mqtt_gen.make_pki(folder))
            try:
                for name in wanted:
                    path = out_dir / name
                    with recording_gzipped(path, f"tcp port {mqtt_gen.PLAIN_PORT}"):
                        _run_mqtt(MQTT_ATTACKS[name][0])
                    written.append(path)
            finally:
                broker.terminate()
                broker.wait(timeout=10)
    return written


def main(argv: list[str] | None = None) -> int:
    return generator_main(__doc__.splitlines()[0] if __doc__ else "", generate, argv)


if __name__ == "__main__":
    raise SystemExit(main())
