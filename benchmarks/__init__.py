"""Benchmarks: ``python -m benchmarks [--quick] [NAME...]`` (``make bench``)."""
