"""Telemetry: one typed event stream, stats snapshots, statsd / Prometheus / OpenTelemetry
bridges (issue 15)."""
