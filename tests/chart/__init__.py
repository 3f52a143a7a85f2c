"""Tests of the Helm chart, the container image recipe and the deployment docs."""
