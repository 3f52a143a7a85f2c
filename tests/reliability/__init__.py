"""Reliability and security fault suite: what the controller does when the world misbehaves."""
