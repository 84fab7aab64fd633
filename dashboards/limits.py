"""The limits drawn on the dashboards. Every number is a copy of ops_center/rulebook/defaults.yaml
(the alert rules) or of docs/domain-facts.md, with its tag; tests/unit/test_dashboards.py
checks each against defaults.yaml so the two cannot drift. Components do not import each
other (docs/style.md, convention 1), hence the copy.
"""

from __future__ import annotations

from typing import Final

# QCVN 05:2023/BTNMT, 24-hour means, µg/m³ [SRC] (docs/domain-facts.md §2.1): PM2.5 50, 45 from
# 01/01/2026; PM10 100. defaults.yaml rules pm25-24h-rolling (schedule) and pm10-24h-rolling.
PM25_24H_UG_M3: Final = 45.0
PM10_24H_UG_M3: Final = 100.0

# QCVN 26:2010/BTNMT LAeq dB(A), day 06:00-21:00 / night [SRC] (defaults.yaml noise-laeq-1h).
# Verify against QCVN 26:2025/BNNMT (limits not retrieved, docs/domain-facts.md §2.2).
NOISE_LAEQ_DB: Final = {"normal": {"day": 70.0, "night": 55.0}, "special": {"day": 55.0, "night": 45.0}}

# [EST] classes (docs/domain-facts.md §3), defaults.yaml rain-heavy, flood-depth, drain-freeboard, bin-full.
RAIN_MM_H: Final = (10.0, 30.0, 50.0)  # heavy, very heavy, torrential
FLOOD_DEPTH_CM: Final = (10.0, 20.0, 30.0, 50.0)  # ngập nhẹ / vừa / nặng / rất nặng
DRAIN_FREEBOARD_CM: Final = (50.0, 20.0, 0.0)  # falling: warning, critical, overflow
BIN_FILL_PCT: Final = (80.0, 95.0)
LAMP_OUT_FRACTION: Final = 0.1  # lamp-out: below 10 % of rated_w while it must be lit
SILENT_INTERVALS: Final = 3  # sensor-silent: no reading for more than 3 x interval_s

# QCVN 40:2011/BTNMT, Cmax = C x Kq x Kf (defaults.yaml ww-qcvn40; verify against QCVN
# 40:2025). pH and temperature are not factored.
QCVN40: Final = {
    "ww_cod": {"A": 75.0, "B": 150.0},
    "ww_tss": {"A": 50.0, "B": 100.0},
    "ww_nh4": {"A": 5.0, "B": 10.0},
}
QCVN40_PH: Final = {"A": (6.0, 9.0), "B": (5.5, 9.0)}
QCVN40_TEMP_C: Final = 40.0
QCVN40_CRITICAL_RATIO: Final = 2.0

# QCVN 19:2009/BTNMT mg/Nm³, Cmax = C x Kp x Kv [MEM] (defaults.yaml stack-qcvn19; verify
# against QCVN 19:2024).
QCVN19: Final = {
    "stack_dust": {"A": 400.0, "B": 200.0},
    "stack_so2": {"A": 1500.0, "B": 500.0},
    "stack_nox": {"A": 1000.0, "B": 850.0},
    "stack_co": {"A": 1000.0, "B": 1000.0},
}
QCVN19_CRITICAL_RATIO: Final = 1.5
DEFAULT_COLUMN: Final = "B"

# Combustible gas %LEL [EST] (gas-lel) and fixed heat detectors °C [EST] (fire-heat).
GAS_LEL_PCT: Final = (10.0, 20.0, 40.0)
FIRE_TEMP_C: Final = (57.0, 75.0)
