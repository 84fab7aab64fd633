"""Industrial-cluster manager: effluent against QCVN 40, stack emissions against QCVN 19,
combustible gas (%LEL) and fire detectors, for the cluster chosen in ``$site``.

Regulatory limits depend on each monitor's column and coefficients (registry attrs
``column``, ``kq``/``kf``, ``kp``/``kv``), so the panels plot each parameter in % of its own
Cmax = C x K1 x K2 (100 % = the limit), computed in SQL from the same table the rules use."""

from __future__ import annotations

from dashboards import limits as lim
from dashboards.model import Dashboard, Panel, Query, Step, Variable
from dashboards.queries import latest, limits_join, series

SITE = "= '$site'"
SERIES = ("time", "metric", "value")

CLUSTER_VARIABLE = Variable(
    name="site",
    label="Cụm công nghiệp / Industrial cluster",
    sql=("SELECT id AS __value, name_vi AS __text FROM sites WHERE kind = 'industrial_cluster' AND active "
         "ORDER BY name_vi"),
)


def _ratio(title: str, table: dict[str, dict[str, float]], factors: tuple[str, str], critical: float,
           regulation: str) -> Panel:
    return Panel(
        title=title,
        type="timeseries",
        unit="percent",
        queries=(Query(series(
            metrics=tuple(table), site=SITE, label="r.sensor || ' ' || r.metric",
            value="100 * ({mean}) / max(lim.cmax)",
            join=limits_join(table, factors, lim.DEFAULT_COLUMN),
        ), SERIES),),
        steps=(Step(None, "green"), Step(100, "orange"), Step(100 * critical, "red")),
        width=24, height=9,
        description=(f"Mỗi thông số tính bằng % Cmax = C × {factors[0]} × {factors[1]} theo cột của trạm "
                     f"({regulation}; cần đối chiếu bản mới). 100 % là giới hạn. / Each parameter in % of "
                     f"its Cmax = C x {factors[0]} x {factors[1]} for the monitor's column ({regulation}; "
                     "verify against the new edition). 100 % is the limit."),
    )


def compliance() -> Dashboard:
    ph_lo, ph_hi = lim.QCVN40_PH[lim.DEFAULT_COLUMN]
    g1, g2, g3 = lim.GAS_LEL_PCT
    t1, t2 = lim.FIRE_TEMP_C
    panels = (
        _ratio("Nước thải so với QCVN 40 (% giới hạn) / Effluent vs QCVN 40 (% of limit)",
               lim.QCVN40, ("kq", "kf"), lim.QCVN40_CRITICAL_RATIO, "QCVN 40:2011/BTNMT"),
        Panel(
            title="pH nước thải / Effluent pH",
            type="timeseries",
            queries=(Query(series(metrics=("ww_ph",), site=SITE), SERIES),),
            steps=(Step(None, "red"), Step(ph_lo, "green"), Step(ph_hi, "red")),
            unit="none", width=12,
            description=f"QCVN 40:2011 cột B: {ph_lo:g}-{ph_hi:g} / column B: {ph_lo:g}-{ph_hi:g}",
        ),
        Panel(
            title="Lưu lượng vào / ra trạm xử lý / Treatment plant inflow / outflow (m³/h)",
            type="timeseries",
            queries=(Query(series(metrics=("ww_flow_in_m3h", "ww_flow_out_m3h"), site=SITE,
                                  label="r.metric"), SERIES),),
            unit="none", width=12,
            description=("Lưu lượng ra lớn hơn lưu lượng vào là dấu hiệu xả tắt (quy tắc ww-bypass). / "
                         "Outflow above inflow suggests a bypass (rule ww-bypass)."),
        ),
        _ratio("Khí thải ống khói so với QCVN 19 (% giới hạn) / Stack emissions vs QCVN 19 (% of limit)",
               lim.QCVN19, ("kp", "kv"), lim.QCVN19_CRITICAL_RATIO, "QCVN 19:2009/BTNMT"),
        Panel(
            title="Khí cháy / Combustible gas (%LEL)",
            type="timeseries",
            queries=(Query(series(metrics=("gas_lel",), site=SITE), SERIES),),
            steps=(Step(None, "green"), Step(g1, "yellow"), Step(g2, "orange"), Step(g3, "red")),
            unit="percent", width=12, min=0,
            description="Ngưỡng báo động thường dùng 10 / 20 % LEL [ước tính] / common alarm points [EST]",
        ),
        Panel(
            title="Đầu báo cháy: nhiệt độ mới nhất / Fire detectors: latest temperature (°C)",
            type="bargauge",
            unit="celsius",
            queries=(Query(latest(metric="fire_temp_c", site=SITE), ("sensor", "value"), "table"),),
            steps=(Step(None, "green"), Step(t1, "red"), Step(t2, "purple")),
            min=0, max=100, width=12,
            description=("Đầu báo nhiệt cố định báo ở ~57 °C [ước tính] / "
                         "fixed heat detectors alarm at ~57 °C [EST]"),
        ),
        Panel(
            title="Cảnh báo đang mở của cụm / Active alerts of the cluster",
            type="table",
            queries=(Query(
                "SELECT opened_at, severity, category, rule, sensor, metric, value, message_vi, message_en\n"
                "FROM alerts WHERE site = '$site' AND state = 'active'\n"
                "ORDER BY opened_at DESC LIMIT 200",
                ("opened_at", "severity", "category", "rule", "sensor", "metric", "value",
                 "message_vi", "message_en"), "table"),),
            width=24, height=8,
        ),
    )
    return Dashboard(
        uid="smartward-cluster-compliance",
        title="Tuân thủ và an toàn cụm công nghiệp / Industrial cluster compliance and safety",
        folder="smartward-cluster",
        variables=(CLUSTER_VARIABLE,),
        tags=("cluster_manager",),
        panels=panels,
    )


def dashboards() -> tuple[Dashboard, ...]:
    return (compliance(),)
