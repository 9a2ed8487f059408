"""Helpers shared by the end-to-end and reliability tests and ``benchmarks/chaos.py``.

* :mod:`tests.support.pipeline` — the seeded end-to-end scenario, the worker
  launcher and the offline computation every point is checked against.
* :mod:`tests.support.chaos` — fault injection around real workers and
  brokers: a paced live producer, kill -9 and restarts, rebalances, a broker
  that keeps its data across restarts, and the comparison of a faulted run
  with an uninterrupted one.
"""
