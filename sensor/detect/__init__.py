"""Baseline learning and anomaly detection, explained and mapped to ATT&CK for ICS (DESIGN.md §1-2)."""
