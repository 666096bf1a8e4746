"""The roles a token carries (DESIGN.md §7). Kept apart from api/auth.py so that the command line can
offer them without importing the web framework."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    ANALYST = "analyst"
    ADMIN = "admin"
    PKI_ADMIN = "pki-admin"
    AUDITOR = "auditor"
