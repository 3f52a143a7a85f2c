"""Helpers of the scaling-quality benchmark (:mod:`benchmarks.bench_quality`).

* :mod:`.scenarios`: the loads (recorded traces scaled to a fleet size, a time-compressed day,
  synthetic step and spike) and the cold starts;
* :mod:`.contenders`: the autoscalers compared (HPA as deployed, HPA and KEDA on queue depth,
  ``algorithm: llm`` with example and tuned policies), as simulator configurations;
* :mod:`.oracle`: the offline lower bound (per-replica SLO capacity, fewest replicas per minute);
* :mod:`.plots`: one PNG per scenario (load, replicas per contender, SLO-violating minutes).
"""
