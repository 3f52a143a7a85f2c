"""Simulated LLM serving fleet: replica model, pods with cold start, load, metrics, reports."""
