"""Controller: ingest, baselines, detection, policy and enforcement."""
