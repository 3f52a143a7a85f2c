"""Simulated LLM serving fleet: replica model, pods with cold start, load, metrics, reports.

Modules, from the inside out:

* :mod:`~autoscaler.sim.profiles`: hardware profiles (step-time model, limits) and their sources;
* :mod:`~autoscaler.sim.engine`: one replica (continuous batching, chunked prefill, KV blocks,
  preemption), event-driven with closed-form decode macro-steps;
* :mod:`~autoscaler.sim.calibrate`: the closed-loop driver used to check profiles;
* :mod:`~autoscaler.sim.cluster` and :mod:`~autoscaler.sim.fleet`: pods, cold start, drain, GPU
  limit, the balancer, the event heap, and the ``ScaleClient`` / ``PodSource`` ports;
* :mod:`~autoscaler.sim.metrics`, :mod:`~autoscaler.sim.promql`,
  :mod:`~autoscaler.sim.exposition`: scraped metrics, the ``MetricSource`` with PromQL window
  semantics, the HTTP exposition;
* :mod:`~autoscaler.sim.load`: traces and synthetic loads;
* :mod:`~autoscaler.sim.run` and :mod:`~autoscaler.sim.report`: a whole run with the controller's
  own control loop, its summary, table and plot.
"""
