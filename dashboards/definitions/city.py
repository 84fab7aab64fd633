"""City leader: every site at once (the city's database role is mapped to all sites):
open incidents by kind and severity, alerts over time, data completeness."""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, Query, Step

SEVERITY_ORDER = "array_position(ARRAY['emergency', 'critical', 'warning', 'info'], i.severity)"


def overview() -> Dashboard:
    panels = (
        Panel(
            title="Sự cố đang mở / Open incidents",
            type="stat",
            queries=(Query(
                "SELECT count(*) FILTER (WHERE severity IN ('critical', 'emergency'))\n"
                "         AS \"Nghiêm trọng / critical\",\n"
                "       count(*) FILTER (WHERE severity = 'warning') AS \"Cảnh báo / warning\",\n"
                "       count(*) FILTER (WHERE severity = 'info') AS \"Thông tin / info\"\n"
                "FROM incidents WHERE state <> 'resolved'",
                ("Nghiêm trọng / critical", "Cảnh báo / warning", "Thông tin / info"), "table"),),
            steps=(Step(None, "green"), Step(1, "orange")), width=24, height=5,
        ),
        Panel(
            title="Sự cố đang mở theo loại và mức độ / Open incidents by kind and severity",
            type="table",
            queries=(Query(
                "SELECT st.name_vi AS site, i.kind, i.severity, count(*) AS open,\n"
                "       min(i.opened_at) AS oldest_opened_at,\n"
                "       count(*) FILTER (WHERE i.state = 'acknowledged') AS acknowledged\n"
                "FROM incidents i JOIN sites st ON st.id = i.site\n"
                "WHERE i.state <> 'resolved'\n"
                f"GROUP BY st.name_vi, i.kind, i.severity ORDER BY min({SEVERITY_ORDER}), 1, 2",
                ("site", "kind", "severity", "open", "oldest_opened_at", "acknowledged"), "table"),),
            width=12, height=9,
        ),
        Panel(
            title="Cảnh báo mới theo mức độ / New alerts by severity",
            type="timeseries",
            queries=(Query(
                "SELECT $__timeGroup(opened_at, $__interval) AS \"time\", severity AS metric,\n"
                "  count(*) AS value\n"
                "FROM alerts WHERE $__timeFilter(opened_at)\n"
                "GROUP BY 1, 2 ORDER BY 1, 2",
                ("time", "metric", "value"),),),
            width=12, height=9,
        ),
        Panel(
            title="Cảnh báo mới theo địa bàn / New alerts by site",
            type="timeseries",
            queries=(Query(
                "SELECT $__timeGroup(a.opened_at, $__interval) AS \"time\", st.name_vi AS metric,\n"
                "  count(*) AS value\n"
                "FROM alerts a JOIN sites st ON st.id = a.site WHERE $__timeFilter(a.opened_at)\n"
                "GROUP BY 1, 2 ORDER BY 1, 2",
                ("time", "metric", "value"),),),
            width=12, height=9,
        ),
        Panel(
            title="Độ đầy đủ dữ liệu theo cổng / Data completeness by gateway (%)",
            type="table",
            unit="percent",
            queries=(Query(
                # Same arithmetic as the ops center's overview: batches stored over the seqs
                # the gateway used in the window (max - min + 1), from ingest_batches.
                "SELECT b.site, b.gateway, count(*) FILTER (WHERE b.outcome = 'stored') AS stored,\n"
                "       count(*) FILTER (WHERE b.outcome = 'dead_letter') AS dead_lettered,\n"
                "       max(b.seq) - min(b.seq) + 1 AS expected,\n"
                "       round(100.0 * count(*) FILTER (WHERE b.outcome = 'stored')\n"
                "             / (max(b.seq) - min(b.seq) + 1), 2) AS completeness_pct,\n"
                "       max(b.received_at) AS last_batch_at\n"
                "FROM ingest_batches b WHERE $__timeFilter(b.received_at)\n"
                "GROUP BY b.site, b.gateway ORDER BY completeness_pct, b.site, b.gateway",
                ("site", "gateway", "stored", "dead_lettered", "expected", "completeness_pct",
                 "last_batch_at"), "table"),),
            steps=(Step(None, "red"), Step(95, "yellow"), Step(99.5, "green")),
            width=12, height=9,
        ),
        Panel(
            title="Độ đầy đủ dữ liệu theo địa bàn / Data completeness by site (%)",
            type="timeseries",
            unit="percent",
            queries=(Query(
                "SELECT \"time\", site AS metric,\n"
                "       round(100.0 * sum(stored) / sum(expected), 2)::float8 AS value\n"
                "FROM (SELECT $__timeGroup(b.received_at, $__interval) AS \"time\", b.site, b.gateway,\n"
                "             count(*) FILTER (WHERE b.outcome = 'stored') AS stored,\n"
                "             max(b.seq) - min(b.seq) + 1 AS expected\n"
                "      FROM ingest_batches b WHERE $__timeFilter(b.received_at)\n"
                "      GROUP BY 1, 2, 3) g\n"
                "GROUP BY 1, 2 ORDER BY 1, 2",
                ("time", "metric", "value"),),),
            steps=(Step(None, "red"), Step(95, "yellow"), Step(99.5, "green")),
            min=0, max=100, width=24, height=8,
            description=("Trong mỗi khoảng: số lô đã lưu / số thứ tự lô cổng đã dùng. / Per interval: "
                         "batches stored / seqs the gateway used."),
        ),
    )
    return Dashboard(
        uid="smartward-city-overview",
        title="Tổng quan thành phố / City overview",
        folder="smartward-city",
        tags=("city_leader",),
        panels=panels,
    )


def dashboards() -> tuple[Dashboard, ...]:
    return (overview(),)
