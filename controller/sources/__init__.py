"""Observation sources other than the metrics store: Prometheus, for clusters where it already scrapes replicas."""
