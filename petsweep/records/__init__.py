"""The on-disk contract: run directories and atomic writes, the status protocol (claims,
heartbeats), result.json, provenance, the sweep index, labels, what a run keeps. No torch."""
