"""Asset inventory, communication graph and their exports (DESIGN.md §2, issue 5)."""
