"""Freshness and gateway rules. Their logic lives in the engine (it needs the registry's
view of which sensors a gateway carries); these are their parameters.

- ``freshness``: a (sensor, metric) silent for more than ``intervals`` × its ``interval_s``
  while its gateway keeps talking: "connected but silent" (``sensor_silent``).
- ``gateway_offline``: the gateway's retained status / Last Will says offline.
- ``gateway_silent``: no batch from the gateway for ``after_s`` of wall time (the status may
  not have changed yet: the broker publishes the Last Will only after the keep-alive).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ops_center.domain.alerts import Severity
from ops_center.domain.rules.base import RuleBase


class FreshnessRule(RuleBase):
    kind: Literal["freshness"]
    intervals: float = Field(default=3.0, gt=1)
    min_silence_s: float = Field(default=60.0, ge=0)
    severity: Severity = "warning"

    def silence_s(self, interval_s: float) -> float:
        return max(self.intervals * interval_s, self.min_silence_s)


class GatewayOfflineRule(RuleBase):
    kind: Literal["gateway_offline"]
    severity: Severity = "critical"


class GatewaySilentRule(RuleBase):
    kind: Literal["gateway_silent"]
    after_s: float = Field(default=300.0, gt=0)
    severity: Severity = "warning"
