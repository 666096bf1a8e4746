# mypy: disallow-untyped-calls=False
"""Generate the Modbus/TCP sample captures in pcaps/ from a real pymodbus server and client.

A pymodbus 3.x ``ModbusTcpServer`` (several unit ids, device identification set) listens on
127.0.0.1:502 and a pymodbus ``AsyncModbusTcpClient`` talks to it while tcpdump records the loopback
(:func:`pcaps.generate.record.recording`). One capture per scenario:

* ``modbus-pymodbus-polling.pcap``: FC3/FC1/FC4 polling of units 1 and 2;
* ``modbus-pymodbus-writes-exceptions.pcap``: FC5/6/15/16/22/23 writes, FC8 diagnostics, and a read
  beyond the datastore answered with exception 2 (illegal data address);
* ``modbus-pymodbus-device-id.pcap``: FC43/MEI 14 Read Device Identification (basic and regular)
  and FC17 Report Server ID.

Run (as root, tcpdump needs the loopback): ``.venv/bin/python -m pcaps.generate.modbus_gen --out pcaps/``
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
    ModbusSimulatorContext,
)
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusTcpServer

from pcaps.generate.record import generator_main, recording

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
PORT = 502
UNITS = (1, 2)
BLOCK = 100  # registers/coils per table; reads past it raise exception 2

IDENTITY = {
    "VendorName": "Zonewarden Test Vendor",
    "ProductCode": "ZW-PLC-100",
    "MajorMinorRevision": "3.16.1",
    "VendorUrl": "https://example.invalid/zonewarden",
    "ProductName": "Zonewarden simulated PLC",
    "ModelName": "pymodbus-sim",
    "UserApplicationName": "pcap-generator",
}


def _context() -> ModbusServerContext:
    devices: dict[int, ModbusDeviceContext | ModbusSimulatorContext] = {}
    for unit in UNITS:
        devices[unit] = ModbusDeviceContext(
            di=ModbusSequentialDataBlock(1, [i % 2 for i in range(BLOCK)]),
            co=ModbusSequentialDataBlock(1, [int(i % 3 == 0) for i in range(BLOCK)]),
            hr=ModbusSequentialDataBlock(1, [unit * 1000 + i for i in range(BLOCK)]),
            ir=ModbusSequentialDataBlock(1, [unit * 100 + i for i in range(BLOCK)]),
        )
    return ModbusServerContext(devices=devices, single=False)


Scenario = Callable[[AsyncModbusTcpClient], Awaitable[None]]


async def _polling(client: AsyncModbusTcpClient) -> None:
    for _ in range(8):
        await client.read_holding_registers(0, count=10, device_id=1)
        await client.read_coils(0, count=16, device_id=1)
        await client.read_input_registers(4, count=8, device_id=2)
        await asyncio.sleep(0.01)


async def _writes_exceptions(client: AsyncModbusTcpClient) -> None:
    await client.write_coil(3, True, device_id=1)
    await client.write_coil(4, False, device_id=1)
    await client.write_register(5, 1234, device_id=1)
    await client.write_coils(10, [True, False, True, True, False, False, True, False, True], device_id=1)
    await client.write_registers(20, [11, 22, 33], device_id=2)
    await client.mask_write_register(address=5, and_mask=0x00F2, or_mask=0x0025, device_id=1)
    await client.readwrite_registers(
        read_address=20, read_count=3, write_address=30, values=[7, 8], device_id=2
    )
    await client.diag_read_diagnostic_register(device_id=1)
    await client.diag_query_data(b"\x12\x34", device_id=1)
    # Reads beyond the 100-entry tables: exception 2 (illegal data address).
    await client.read_holding_registers(500, count=4, device_id=1)
    await client.read_coils(990, count=20, device_id=2)


async def _device_id(client: AsyncModbusTcpClient) -> None:
    await client.read_device_information(read_code=1, object_id=0, device_id=1)
    await client.read_device_information(read_code=2, object_id=0, device_id=1)
    await client.report_device_id(device_id=1)


SCENARIOS: dict[str, Scenario] = {
    "modbus-pymodbus-polling.pcap": _polling,
    "modbus-pymodbus-writes-exceptions.pcap": _writes_exceptions,
    "modbus-pymodbus-device-id.pcap": _device_id,
}


async def _run(scenario: Scenario) -> None:
    identity = ModbusDeviceIdentification(info_name=IDENTITY)
    server = ModbusTcpServer(_context(), identity=identity, address=(HOST, PORT))
    task = asyncio.create_task(server.serve_forever())
    try:
        client = AsyncModbusTcpClient(HOST, port=PORT, timeout=2, retries=0)
        for _ in range(50):
            if await client.connect():
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("pymodbus server did not come up on 127.0.0.1:502")
        try:
            await scenario(client)
        finally:
            client.close()
            await asyncio.sleep(0.2)
    finally:
        await server.shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def generate(out_dir: Path, names: list[str] | None = None) -> list[Path]:
    written: list[Path] = []
    for name, scenario in SCENARIOS.items():
        if names and name not in names:
            continue
        path = out_dir / name
        with recording(path, f"tcp port {PORT}"):
            asyncio.run(_run(scenario))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    return generator_main(__doc__.splitlines()[0] if __doc__ else "", generate, argv)


if __name__ == "__main__":
    raise SystemExit(main())
