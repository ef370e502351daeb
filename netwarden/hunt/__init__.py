"""Threat hunting over the archive: DuckDB views, built-in hunts, questions, posture."""
