"""Sensor: capture, decode, flow assembly, per-host telemetry, bus publisher."""
