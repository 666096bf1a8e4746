"""Health and status."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Health(BaseModel):
    status: Literal["ok"] = Field(examples=["ok"])
    version: str = Field(examples=["0.1.0"])


class Drops(BaseModel):
    kernel: int = Field(ge=0, description="frames the kernel dropped before the sensor read them")
    queue: int = Field(ge=0, description="frames dropped because the pipeline did not keep up")


class SensorInfo(BaseModel):
    running: bool
    mode: Literal["live", "replay", "none"] = Field(
        description="live SPAN capture, file replay, or no sensor"
    )
    interface: str | None = None
    finished: bool = Field(description="a replay has processed every file / a capture has stopped")


class Status(BaseModel):
    """Sensor counters (as in the replay summary) and versions."""

    sensor: SensorInfo
    packets: int = Field(ge=0, examples=[58])
    bytes: int = Field(ge=0)
    flows: int = Field(ge=0)
    decode_errors: int = Field(ge=0)
    gaps: int = Field(ge=0, description="TCP reassembly gaps (bytes never seen)")
    drops: Drops
    capture: dict[str, int] = Field(description="capture counters of every source")
    protocols: dict[str, dict[str, Any]] = Field(
        description="per-protocol counters (modbus, opcua, mqtt, tls)"
    )
    alerts: dict[str, Any] = Field(description="alerts raised, by category and by rule")
    versions: dict[str, str] = Field(examples=[{"zonewarden": "0.1.0", "python": "3.11.2"}])
