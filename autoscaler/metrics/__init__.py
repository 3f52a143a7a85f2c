"""Metric sources: the :class:`~autoscaler.metrics.base.MetricSource` protocol and the
Prometheus implementation (the only module that talks to Prometheus)."""
