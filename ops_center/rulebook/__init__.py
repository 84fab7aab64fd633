"""The rulebook: rule and pattern files (YAML, edited by city staff) and their loader.

Not to be confused with ``ops_center/domain/rules/``, the rule kinds (pure evaluators) that
these files configure.
"""
