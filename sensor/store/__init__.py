"""Persistent store: SQLite in WAL mode with versioned SQL migrations (DESIGN.md §6)."""
