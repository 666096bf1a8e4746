"""The web API test environment: an in-process app with a token for every role (used by conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.auth import TokenStore
from api.deps import connect
from api.roles import Role
from api.settings import Settings

API_PASSPHRASE = b"api test passphrase 123"


@dataclass
class ApiEnv:
    """A running app (in-process) with a token for every role."""

    app: FastAPI
    client: TestClient
    settings: Settings
    tokens: dict[str, str]

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def audit_rows(self) -> list[tuple[str, str, str, str]]:
        conn = connect(self.settings.db_path)
        try:
            rows = conn.execute("SELECT who, what, object, result FROM audit_log ORDER BY seq").fetchall()
        finally:
            conn.close()
        return [tuple(r) for r in rows]  # type: ignore[misc]


def make_tokens(db_path: Path) -> dict[str, str]:
    conn = connect(db_path)
    try:
        TokenStore.create_schema(conn)
        return {str(role): TokenStore(conn).create(role, f"test-{role}", "pytest")[1] for role in Role}
    finally:
        conn.close()
