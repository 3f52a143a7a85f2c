"""Logging configuration, the controller's own Prometheus metrics, and health endpoints."""
