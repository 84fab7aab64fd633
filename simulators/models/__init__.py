"""One model per sensor kind of ``contract.catalog.SENSOR_KINDS``.

A model turns (time, the sensor's context, the world's events) into the values of every
metric of its kind; the fleet keeps the metrics the registry declares for the sensor,
clamps them to the catalog's physical bounds, rounds them and applies data faults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from simulators.models.air_quality import AirQualityModel
from simulators.models.base import SensorContext, SensorModel
from simulators.models.drainage_level import DrainageLevelModel
from simulators.models.fire_detector import FireDetectorModel
from simulators.models.flood_depth import FloodDepthModel
from simulators.models.gas_detector import GasDetectorModel
from simulators.models.noise import NoiseModel
from simulators.models.power_meter import PowerMeterModel
from simulators.models.rain_gauge import RainGaugeModel
from simulators.models.stack import StackModel
from simulators.models.street_light import StreetLightModel
from simulators.models.waste_bin import WasteBinModel
from simulators.models.wastewater import WastewaterModel

MODELS: Final[Mapping[str, Callable[[SensorContext], SensorModel]]] = MappingProxyType({
    "air_quality": AirQualityModel,
    "noise": NoiseModel,
    "rain_gauge": RainGaugeModel,
    "flood_depth": FloodDepthModel,
    "drainage_level": DrainageLevelModel,
    "street_light": StreetLightModel,
    "waste_bin": WasteBinModel,
    "wastewater": WastewaterModel,
    "stack": StackModel,
    "gas_detector": GasDetectorModel,
    "fire_detector": FireDetectorModel,
    "power_meter": PowerMeterModel,
})


def build_model(ctx: SensorContext) -> SensorModel:
    try:
        factory = MODELS[ctx.spec.kind]
    except KeyError:
        raise KeyError(
            f"Không có mô hình mô phỏng cho loại cảm biến {ctx.spec.kind!r} / "
            f"no simulator model for sensor kind {ctx.spec.kind!r}"
        ) from None
    return factory(ctx)


__all__ = ["MODELS", "SensorContext", "SensorModel", "build_model"]
