"""Where the repository, its sample captures and the public captures are (importable from any test)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PCAPS = REPO / "pcaps"
SHARED_PUBLIC = REPO.parent / "shared" / "pcaps" / "public"


def shared_public_dir() -> Path:
    """../shared/pcaps/public, or skip the test with a reason when it is not beside the checkout."""
    if not (SHARED_PUBLIC / "ORACLE.json").is_file():
        pytest.skip(f"public captures not found at {SHARED_PUBLIC} (../shared is not beside the checkout)")
    return SHARED_PUBLIC


def shared_public_files(prefix: str) -> list[str]:
    """Names of the public captures starting with ``prefix`` (empty when ../shared is absent)."""
    if not SHARED_PUBLIC.is_dir():
        return []
    return sorted(p.name for p in SHARED_PUBLIC.iterdir() if p.name.startswith(prefix) and ".pcap" in p.name)
