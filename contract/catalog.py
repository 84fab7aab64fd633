"""The metric catalog and sensor kinds: units, names (Vietnamese first), physical bounds.

Physical bounds are what a working instrument can report at all; a value outside them is
a data-quality flag (instrument fault), never a pollution alert. Regulatory limits live in
the ops center's rules, not here.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from pydantic import BaseModel, ConfigDict


class Metric(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    unit: str
    name_vi: str
    name_en: str
    min: float
    max: float
    boolean: bool = False

    def in_bounds(self, value: float) -> bool:
        return self.min <= value <= self.max


class SensorKind(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    name_vi: str
    name_en: str
    metrics: tuple[str, ...]


def _m(code: str, unit: str, vi: str, en: str, lo: float, hi: float, *, boolean: bool = False) -> Metric:
    return Metric(code=code, unit=unit, name_vi=vi, name_en=en, min=lo, max=hi, boolean=boolean)


_METRICS: Final = (
    # Ambient air (QĐ 1459/QĐ-TCMT works in µg/m³ for every pollutant, CO included).
    _m("pm25", "µg/m³", "Bụi PM2.5", "PM2.5", 0, 1000),
    _m("pm10", "µg/m³", "Bụi PM10", "PM10", 0, 2000),
    _m("no2", "µg/m³", "NO₂", "NO2", 0, 5000),
    _m("co", "µg/m³", "CO", "CO", 0, 200_000),
    _m("o3", "µg/m³", "O₃", "O3", 0, 2000),
    _m("so2", "µg/m³", "SO₂", "SO2", 0, 5000),
    _m("air_temp_c", "°C", "Nhiệt độ không khí", "Air temperature", -10, 60),
    _m("humidity_pct", "%", "Độ ẩm", "Relative humidity", 0, 100),
    # Noise.
    _m("noise_laeq", "dB(A)", "Mức âm tương đương LAeq", "Noise LAeq", 20, 140),
    _m("noise_lamax", "dB(A)", "Mức âm cực đại LAmax", "Noise LAmax", 20, 150),
    # Rain, street flooding, drainage.
    _m("rain_mm_h", "mm/h", "Cường độ mưa", "Rain rate", 0, 300),
    _m("water_level_cm", "cm", "Độ sâu ngập đường", "Street flood depth", 0, 300),
    _m("drain_freeboard_cm", "cm", "Khoảng cách mặt nước đến mép kênh", "Drain freeboard", -100, 400),
    _m("pump_on", "0/1", "Trạm bơm chạy", "Pump running", 0, 1, boolean=True),
    # Street lighting.
    _m("lamp_power_w", "W", "Công suất đèn", "Lamp power", 0, 500),
    _m("lamp_voltage_v", "V", "Điện áp đèn", "Lamp voltage", 0, 300),
    _m("lamp_current_a", "A", "Dòng điện đèn", "Lamp current", 0, 5),
    _m("lamp_temp_c", "°C", "Nhiệt độ bộ nguồn đèn", "Lamp driver temperature", -10, 120),
    _m("cabinet_door_open", "0/1", "Cửa tủ điện mở", "Cabinet door open", 0, 1, boolean=True),
    # Waste.
    _m("bin_fill_pct", "%", "Mức đầy thùng rác", "Bin fill level", 0, 100),
    # Wastewater outlet (QCVN 40).
    _m("ww_ph", "pH", "pH nước thải", "Effluent pH", 0, 14),
    _m("ww_temp_c", "°C", "Nhiệt độ nước thải", "Effluent temperature", 0, 80),
    _m("ww_cod", "mg/L", "COD", "COD", 0, 5000),
    _m("ww_tss", "mg/L", "Chất rắn lơ lửng TSS", "TSS", 0, 5000),
    _m("ww_nh4", "mg/L", "Amoni (NH₄⁺ tính theo N)", "Ammonium as N", 0, 500),
    _m("ww_flow_in_m3h", "m³/h", "Lưu lượng vào", "Inflow", 0, 5000),
    _m("ww_flow_out_m3h", "m³/h", "Lưu lượng ra", "Outflow", 0, 5000),
    # Stack emissions (QCVN 19), mg/Nm³.
    _m("stack_dust", "mg/Nm³", "Bụi tổng ống khói", "Stack total dust", 0, 5000),
    _m("stack_so2", "mg/Nm³", "SO₂ ống khói", "Stack SO2", 0, 10_000),
    _m("stack_nox", "mg/Nm³", "NOx ống khói", "Stack NOx", 0, 10_000),
    _m("stack_co", "mg/Nm³", "CO ống khói", "Stack CO", 0, 10_000),
    _m("stack_o2_pct", "%", "O₂ dư", "Excess O2", 0, 25),
    _m("stack_temp_c", "°C", "Nhiệt độ khí thải", "Flue gas temperature", 0, 600),
    _m("stack_flow_m3h", "m³/h", "Lưu lượng khí thải", "Stack flow", 0, 500_000),
    # Safety.
    _m("gas_lel", "%LEL", "Nồng độ khí cháy", "Combustible gas", 0, 100),
    _m("fire_temp_c", "°C", "Nhiệt độ đầu báo cháy", "Fire detector temperature", -10, 200),
    _m("smoke_pct", "%/m", "Mật độ khói", "Smoke obscuration", 0, 100),
    # Power.
    _m("power_kw", "kW", "Công suất tiêu thụ", "Active power", 0, 20_000),
    _m("power_factor", "", "Hệ số công suất", "Power factor", 0, 1),
    # Radio link and battery of a wireless (LoRaWAN) device; a sensor reports them when its
    # `metrics` lists them (docs/edge-devices.md).
    _m("battery_pct", "%", "Mức pin", "Battery level", 0, 100),
    _m("lora_rssi_dbm", "dBm", "Cường độ tín hiệu LoRa (RSSI)", "LoRa signal strength (RSSI)", -150, 0),
    _m("lora_snr_db", "dB", "Tỉ số tín hiệu/nhiễu LoRa (SNR)", "LoRa signal-to-noise ratio (SNR)", -30, 30),
)

METRICS: Final = MappingProxyType({m.code: m for m in _METRICS})


def _k(code: str, vi: str, en: str, *metrics: str) -> SensorKind:
    return SensorKind(code=code, name_vi=vi, name_en=en, metrics=metrics)


_KINDS: Final = (
    _k("air_quality", "Trạm quan trắc không khí", "Air quality station",
       "pm25", "pm10", "no2", "co", "o3", "so2", "air_temp_c", "humidity_pct"),
    _k("noise", "Cảm biến tiếng ồn", "Noise sensor", "noise_laeq", "noise_lamax"),
    _k("rain_gauge", "Trạm đo mưa", "Rain gauge", "rain_mm_h"),
    _k("flood_depth", "Cảm biến ngập đường", "Street flood sensor", "water_level_cm"),
    _k("drainage_level", "Cảm biến mực nước kênh thoát", "Drainage level sensor",
       "drain_freeboard_cm", "pump_on"),
    _k("street_light", "Đèn chiếu sáng công cộng", "Street light",
       "lamp_power_w", "lamp_voltage_v", "lamp_current_a", "lamp_temp_c", "cabinet_door_open"),
    _k("waste_bin", "Thùng rác thông minh", "Smart waste bin", "bin_fill_pct"),
    _k("wastewater", "Trạm quan trắc nước thải tự động", "Wastewater monitoring station",
       "ww_ph", "ww_temp_c", "ww_cod", "ww_tss", "ww_nh4", "ww_flow_in_m3h", "ww_flow_out_m3h"),
    _k("stack", "Trạm quan trắc khí thải ống khói", "Stack emission monitor",
       "stack_dust", "stack_so2", "stack_nox", "stack_co", "stack_o2_pct", "stack_temp_c",
       "stack_flow_m3h"),
    _k("gas_detector", "Đầu dò khí cháy", "Gas detector", "gas_lel"),
    _k("fire_detector", "Đầu báo cháy", "Fire detector", "fire_temp_c", "smoke_pct"),
    _k("power_meter", "Công tơ điện", "Power meter", "power_kw", "power_factor"),
)

SENSOR_KINDS: Final = MappingProxyType({k.code: k for k in _KINDS})


def metric(code: str) -> Metric:
    return METRICS[code]


def _check_catalog() -> None:
    for kind in _KINDS:
        missing = [m for m in kind.metrics if m not in METRICS]
        if missing:  # pragma: no cover - guards edits to the tables above
            raise AssertionError(f"kind {kind.code} names unknown metrics {missing}")


_check_catalog()
