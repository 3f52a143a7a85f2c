"""Package data: the bundled demo policy (``demo-policy.yaml``) read by ``nim-autoscaler demo``."""
