"""Shared fixtures for the whole suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from zw_paths import REPO, shared_public_dir


@pytest.fixture(scope="session")
def oracle() -> dict[str, Any]:
    """tshark's view of every public capture (ORACLE.json → files)."""
    data: dict[str, Any] = json.loads((shared_public_dir() / "ORACLE.json").read_text())
    return data["files"]  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
