"""Every dashboard, one folder per role (docs/design.md, Roles)."""

from __future__ import annotations

from dashboards.definitions import city, cluster, ward
from dashboards.model import Folder


def folders() -> tuple[Folder, ...]:
    return (
        Folder(uid="smartward-ward", title="Cán bộ phường / Ward staff", dashboards=ward.dashboards()),
        Folder(uid="smartward-cluster", title="Quản lý cụm công nghiệp / Industrial-cluster manager",
               dashboards=cluster.dashboards()),
        Folder(uid="smartward-city", title="Lãnh đạo thành phố / City leader", dashboards=city.dashboards()),
    )
