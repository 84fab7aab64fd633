"""Benchmarks and the servers they start (``smartward bench …``; docs/performance.md).

Every measurement of the product lives here, never inside the product packages: a benchmark may
read YAML, start servers and processes, and read ``/proc``, which the domain must not.
"""
