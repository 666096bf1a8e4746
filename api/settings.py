"""Everything the API process is configured with, in one immutable object handed to ``create_app``.

There is no module-level settings instance and nothing here reads the environment: ``zonewarden serve``
builds a :class:`Settings` from its command line, tests build one per test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

API_PREFIX = "/api/v1"
MAX_PAGE_LIMIT = 1000
DEFAULT_PAGE_LIMIT = 100
MAX_OFFSET = 2**31 - 1


@dataclass(frozen=True, slots=True)
class Settings:
    """API configuration.

    ``db_path`` is the sensor store (SQLite): the API keeps its tokens and its audit log in the same file,
    so a store and the people allowed to read it travel together. ``pki_dir`` is a directory made by
    ``zonewarden pki init``; without it the PKI routes answer 503. The CA keys are decrypted once at
    start-up with the passphrase read from ``pki_passphrase_file`` and never leave the process.
    """

    db_path: Path
    pki_dir: Path | None = None
    pki_passphrase_file: Path | None = None
    policy_path: Path | None = None
    # The anomaly baseline file (``zonewarden baseline``); without it the baseline routes answer 409.
    baseline_path: Path | None = None
    # Rule management (``zonewarden rules``): the directory holding update.yaml and enable/disable.conf
    # and the one the active rule set is built in. Without ``rules_dir`` the API lists the shipped rules
    # and refuses to change anything (409): it never edits the installed package's own files.
    rules_dir: Path | None = None
    rules_data_dir: Path | None = None
    # HOSTILE_INPUTS A6: every request body is cut at this many bytes (413) before anything parses it.
    # Room for the largest schema-valid body written with JSON escapes (12 bytes per character).
    max_body_bytes: int = 2 * 1024 * 1024
    # A10: presented-but-wrong tokens per client address and window before 429 + Retry-After.
    auth_failures_allowed: int = 10
    auth_failure_window_seconds: float = 60.0
    # Tracked client addresses for the limiter; the oldest is forgotten past this (memory stays bounded).
    auth_tracked_clients: int = 10_000
    # EST (RFC 7030 §3.2.2): the profile used by /.well-known/est/simpleenroll without a label.
    est_default_profile: str = "tls-client"
    # Requests reading the whole graph at once (/graph, /graph.graphml, /graph/paths: seconds of CPU on a
    # graph a scanner inflated, in the process that also runs the sensor); more get 503 + Retry-After.
    concurrent_graph_reads: int = 2
    # Server-sent events: how often the alert stream looks for new rows, and the longest a stream lasts.
    sse_poll_seconds: float = 1.0
    sse_max_seconds: float = 3600.0
