"""Ward staff: one ward at a time (``$site``; the ward's database role sees only its own
sites, so the variable offers only those). Environment (air, noise, rain and flooding) and
infrastructure (street lights, bins, sensor freshness)."""

from __future__ import annotations

from dashboards import limits as lim
from dashboards.model import Dashboard, Panel, Query, Step, Variable
from dashboards.queries import latest, series

SITE = "= '$site'"
SERIES = ("time", "metric", "value")

SITE_VARIABLE = Variable(
    name="site",
    label="Phường / Ward",
    sql="SELECT id AS __value, name_vi AS __text FROM sites WHERE kind = 'ward' AND active ORDER BY name_vi",
)


def _air() -> tuple[Panel, ...]:
    pm = []
    for metric, name, limit in (("pm25", "Bụi PM2.5 / PM2.5", lim.PM25_24H_UG_M3),
                                ("pm10", "Bụi PM10 / PM10", lim.PM10_24H_UG_M3)):
        pm.append(Panel(
            title=f"{name} (µg/m³)",
            type="timeseries",
            unit="conμgm3",
            queries=(Query(series(metrics=(metric,), site=SITE, label="r.sensor"), SERIES),),
            steps=(Step(None, "green"), Step(limit, "red")),
            description=(f"Đường đỏ: giới hạn trung bình 24 giờ QCVN 05:2023/BTNMT ({limit:g} µg/m³); "
                         "giá trị trên đồ thị là trung bình theo khoảng thời gian của đồ thị. / "
                         f"Red line: QCVN 05:2023 24-hour limit ({limit:g} µg/m³); plotted values are "
                         "means over the graph's interval."),
        ))
    mean24 = Panel(
        title="Trung bình 24 giờ so với QCVN 05:2023 / 24-hour mean vs QCVN 05:2023",
        type="bargauge",
        unit="percent",
        queries=(Query(
            "SELECT s.name_vi || ' ' || upper(r.metric) AS sensor,\n"
            "  100 * (sum(r.sum) / sum(r.count)) / CASE r.metric WHEN 'pm25' THEN "
            f"{lim.PM25_24H_UG_M3!r} ELSE {lim.PM10_24H_UG_M3!r} END AS value\n"
            "FROM readings_1m r JOIN sensors s ON s.id = r.sensor\n"
            "WHERE r.site = '$site' AND r.metric IN ('pm25', 'pm10')\n"
            "  AND r.bucket > $__timeTo()::timestamptz - interval '24 hours' AND r.bucket <= $__timeTo()\n"
            "GROUP BY s.name_vi, r.metric ORDER BY 1",
            ("sensor", "value"), "table"),),
        steps=(Step(None, "green"), Step(80, "yellow"), Step(100, "red")),
        min=0, max=150, width=24, height=6,
        description=("Trung bình 24 giờ đến cuối khoảng xem, tính bằng % giới hạn QCVN 05:2023 "
                     "(PM2.5 45, PM10 100 µg/m³). / 24-hour mean up to the end of the range, in % of "
                     "the QCVN 05:2023 limit."),
    )
    # One panel per QCVN 26 zone class, each with its own limits (a special zone's 55/45
    # drawn as 70/55 would hide its exceedances).
    noise = tuple(_noise_panel(zone, vi, en) for zone, vi, en in (
        ("special", "khu đặc biệt (trường học, bệnh viện)", "special zone (schools, hospitals)"),
        ("normal", "khu thông thường", "normal zone"),
    ))
    return (*pm, mean24, *noise)


def _noise_panel(zone: str, vi: str, en: str) -> Panel:
    day, night = lim.NOISE_LAEQ_DB[zone]["day"], lim.NOISE_LAEQ_DB[zone]["night"]
    return Panel(
        title=f"Tiếng ồn LAeq 1 giờ, {vi} / Hourly noise LAeq, {en} (dB(A))",
        type="timeseries",
        unit="dB",
        queries=(Query(
            # LAeq is an energy mean (10 log10 of the mean of 10^(L/10)), per hour as QCVN 26
            # judges it: raw readings, since the rollups keep arithmetic means of dB.
            "SELECT $__timeGroup(r.time, '1h') AS \"time\", s.name_vi AS metric,\n"
            "  10 * log(avg(power(10, r.value / 10))) AS value\n"
            "FROM readings r JOIN sensors s ON s.id = r.sensor\n"
            "WHERE $__timeFilter(r.time) AND r.site = '$site' AND r.metric = 'noise_laeq'\n"
            f"  AND coalesce(s.attrs->>'noise_zone', 'normal') = '{zone}'\n"
            "  AND r.quality IN ('good', 'suspect')\n"
            "GROUP BY 1, 2 ORDER BY 1, 2",
            SERIES),),
        steps=(Step(None, "green"), Step(night, "yellow"), Step(day, "red")),
        description=(f"QCVN 26:2010/BTNMT, {vi}: {day:g} dB(A) ban ngày (06-21 h), {night:g} ban đêm "
                     f"(vàng: giới hạn ban đêm, đỏ: ban ngày). / QCVN 26:2010, {en}: {day:g} dB(A) by day, "
                     f"{night:g} at night (yellow: night limit, red: day limit)."),
    )


def _water() -> tuple[Panel, ...]:
    r1, r2, r3 = lim.RAIN_MM_H
    f1, f2, f3, f4 = lim.FLOOD_DEPTH_CM
    d1, d2, d3 = lim.DRAIN_FREEBOARD_CM
    return (
        Panel(
            title="Cường độ mưa / Rain rate (mm/h)",
            type="timeseries",
            queries=(Query(series(metrics=("rain_mm_h",), site=SITE), SERIES),),
            steps=(Step(None, "green"), Step(r1, "yellow"), Step(r2, "orange"), Step(r3, "red")),
            unit="none", width=8,
            description=("Mưa lớn 10, rất lớn 30, cực lớn 50 mm/h [ước tính] / "
                         "heavy, very heavy, torrential [EST]"),
        ),
        Panel(
            title="Độ sâu ngập đường / Street flood depth (cm)",
            type="timeseries",
            queries=(Query(series(metrics=("water_level_cm",), site=SITE), SERIES),),
            steps=(Step(None, "green"), Step(f1, "blue"), Step(f2, "yellow"), Step(f3, "orange"),
                   Step(f4, "red")),
            unit="none", width=8,
            description="Ngập nhẹ 10, vừa 20, nặng 30, rất nặng 50 cm [ước tính] / flood classes [EST]",
        ),
        Panel(
            title="Khoảng cách mặt nước đến mép kênh / Drain freeboard (cm)",
            type="timeseries",
            queries=(Query(series(metrics=("drain_freeboard_cm",), site=SITE), SERIES),),
            steps=(Step(None, "red"), Step(d3, "orange"), Step(d2, "yellow"), Step(d1, "green")),
            unit="none", width=8,
            description=("Càng thấp càng gần tràn: cảnh báo dưới 50 cm, nguy cấp dưới 20, tràn ở 0. / "
                         "Lower is closer to overflow: warning below 50 cm, critical below 20, "
                         "overflow at 0."),
        ),
    )


def environment() -> Dashboard:
    return Dashboard(
        uid="smartward-ward-environment",
        title="Môi trường phường / Ward environment",
        folder="smartward-ward",
        variables=(SITE_VARIABLE,),
        tags=("ward_staff",),
        panels=(*_air(), *_water()),
    )


def infrastructure() -> Dashboard:
    b1, b2 = lim.BIN_FILL_PCT
    lamps_out = Panel(
        title="Đèn hỏng đang mở cảnh báo / Lamps out (active alerts)",
        type="stat",
        queries=(Query(
            "SELECT count(*) AS value FROM alerts\n"
            "WHERE site = '$site' AND rule = 'lamp-out' AND state = 'active'",
            ("value",), "table"),),
        steps=(Step(None, "green"), Step(1, "orange")), width=6, height=6,
    )
    lamp_power = Panel(
        title="Tổng công suất chiếu sáng / Street lighting power (W)",
        type="timeseries",
        unit="watt",
        queries=(Query(
            "SELECT \"time\", 'Tổng / total' AS metric, sum(value) AS value FROM (\n"
            + series(metrics=("lamp_power_w",), site=SITE, ordered=False)
            + "\n) per_lamp GROUP BY 1 ORDER BY 1",
            SERIES),),
        width=18, height=6,
    )
    lamps = Panel(
        title="Đèn chiếu sáng: công suất so với định mức / Street lights: power vs rating",
        type="table",
        unit="percent",
        queries=(Query(
            latest(metric="lamp_power_w", site=SITE, label="s.id",
                   extra_cols=("s.name_vi AS name, (s.attrs->>'rated_w')::float8 AS rated_w, "
                               "round((100 * l.value / NULLIF((s.attrs->>'rated_w')::float8, 0))::numeric, 1)"
                               " "
                               "AS pct_of_rated, l.time AS last_seen")),
            ("sensor", "value", "name", "rated_w", "pct_of_rated", "last_seen"), "table"),),
        steps=(Step(None, "red"), Step(100 * lim.LAMP_OUT_FRACTION, "green")),
        width=12, height=10,
        description=("Dưới 10 % công suất định mức trong giờ phải sáng là đèn hỏng (quy tắc lamp-out). / "
                     "Below 10 % of the rated power while it must be lit, a lamp is out (rule lamp-out)."),
    )
    bins = Panel(
        title="Mức đầy thùng rác / Waste bin fill (%)",
        type="bargauge",
        unit="percent",
        queries=(Query(latest(metric="bin_fill_pct", site=SITE), ("sensor", "value"), "table"),),
        steps=(Step(None, "green"), Step(b1, "orange"), Step(b2, "red")),
        min=0, max=100, width=12, height=10,
    )
    freshness = Panel(
        title="Độ mới dữ liệu cảm biến / Sensor freshness",
        type="table",
        unit="s",
        queries=(Query(
            "SELECT s.id AS sensor, s.name_vi AS name, s.kind, s.interval_s, l.time AS last_seen,\n"
            "  extract(epoch FROM $__timeTo()::timestamptz - l.time)::bigint AS age_s,\n"
            f"  CASE WHEN l.time IS NULL OR $__timeTo()::timestamptz - l.time > "
            f"make_interval(secs => {lim.SILENT_INTERVALS} * s.interval_s)\n"
            "       THEN 'Mất tín hiệu / silent' ELSE 'Đang gửi / reporting' END AS status\n"
            "FROM sensors s\n"
            "LEFT JOIN LATERAL (SELECT r.time FROM readings r WHERE r.sensor = s.id\n"
            "  AND r.metric = s.metrics[1] AND r.time <= $__timeTo()\n"
            "  AND r.time > $__timeTo()::timestamptz - interval '1 day'\n"
            "  ORDER BY r.time DESC LIMIT 1) l ON true\n"
            "WHERE s.site = '$site' AND s.active\n"
            "ORDER BY status DESC, age_s DESC NULLS FIRST",
            ("sensor", "name", "kind", "interval_s", "last_seen", "age_s", "status"), "table"),),
        width=24, height=10,
        description=("Mất tín hiệu: không có số đo trong hơn 3 chu kỳ gửi (quy tắc sensor-silent). / "
                     "Silent: no reading for more than 3 reporting intervals (rule sensor-silent)."),
    )
    return Dashboard(
        uid="smartward-ward-infrastructure",
        title="Hạ tầng phường / Ward infrastructure",
        folder="smartward-ward",
        variables=(SITE_VARIABLE,),
        tags=("ward_staff",),
        panels=(lamps_out, lamp_power, lamps, bins, freshness),
    )


def dashboards() -> tuple[Dashboard, ...]:
    return (environment(), infrastructure())
