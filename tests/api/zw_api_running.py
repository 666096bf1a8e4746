"""An app with a sensor running in it (as ``zonewarden serve --replay`` wires one), for the policy,
baseline and rules API tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from zw_api_env import ApiEnv, make_tokens

from api.app import create_app
from api.settings import Settings
from policy.learn import TrafficCollector
from sensor.live import LiveRunner
from sensor.runtime import Sensor, SensorConfig


def running_env(
    db: Path,
    pcaps: Sequence[Path],
    *,
    policy: Path | None = None,
    baseline: Path | None = None,
    **fields: Any,
) -> tuple[ApiEnv, LiveRunner]:
    """Replay ``pcaps`` in a LiveRunner (sensor/live.py, to the end) and build the app around it."""
    collector = TrafficCollector()
    sensor = Sensor(
        SensorConfig(db_path=db, policy_path=policy, baseline_path=baseline), extra_sinks=[collector]
    )
    runner = LiveRunner(sensor, paths=list(pcaps))
    runner.policy_collector = collector
    runner.start()
    assert runner.finished.wait(60), "the replay did not finish"
    assert runner.error is None, runner.error
    settings = Settings(db_path=db, policy_path=policy, baseline_path=baseline, **fields)
    app = create_app(settings, runner)
    client = TestClient(app, raise_server_exceptions=False)
    return ApiEnv(app, client, settings, make_tokens(db)), runner
