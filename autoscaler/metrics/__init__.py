"""Metric sources: the :class:`~autoscaler.metrics.base.MetricSource` protocol and the
Prometheus implementation (the only package that talks to Prometheus).

* :mod:`.base`: the protocol and :class:`~autoscaler.metrics.base.MetricRequest`.
* :mod:`.prometheus`: :class:`~autoscaler.metrics.prometheus.PrometheusSource`, batched PromQL
  per tick joined to each policy through its pods, with the no-signal rules.
* :mod:`.client`: the HTTP side (auth, TLS, headers, timeouts, retries).
* :mod:`.names`: metric names of NIM / vLLM / legacy vLLM, bucket bounds, coarse-bucket warning.
* :mod:`.promql`: escaping, label selectors, custom query templates (``validate_template``).
* :mod:`.quantile`: Prometheus's ``histogram_quantile`` in numpy, across a target's pods.
"""
