"""The catalog: the store (SQLite) and its exports (QuakeML, CSV)."""
