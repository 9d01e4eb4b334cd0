"""A module that fails while being imported (the init must report it, not crash)."""

raise RuntimeError("import-time failure")
