"""Sensor drivers: the :class:`~edge.drivers.base.Driver` port and its implementations."""
