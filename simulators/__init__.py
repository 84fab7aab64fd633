"""Simulated sensor fleets for the Nam Định demo sites, scenarios with ground truth, faults.

Pure code, no I/O: every value is a function of the registry, a seed, a scenario and the
time asked for, so a test, a demo and a benchmark replay the same readings. Magnitudes and
daily shapes come from ``docs/domain-facts.md`` §3 and §4; every module cites the section it uses.

Entry points: :func:`simulators.fleet.fleet` / :class:`simulators.fleet.GatewaySimulator`,
:func:`simulators.scenarios.get_scenario`, :mod:`simulators.clock`, :mod:`simulators.faults`.
"""

from __future__ import annotations
