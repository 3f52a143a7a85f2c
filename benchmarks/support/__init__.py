"""Shared helpers of the controller benchmarks (``bench_controller``, ``bench_reaction``).

* :mod:`benchmarks.support.kubeproc`: the fake Kubernetes API server
  (:class:`tests.fakekube.FakeKube`) in a child process, with timestamped requests, so the
  controller's CPU time and memory are its own;
* :mod:`benchmarks.support.procstat`: CPU time and memory of processes from ``/proc``;
* :mod:`benchmarks.support.layout`: names of the generated fleet and its policy files.
"""
