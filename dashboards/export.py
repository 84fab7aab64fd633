"""``smartward dashboards export DIR``: Grafana provisioning files.

    DIR/dashboards/<folder uid>/<dashboard uid>.json    the dashboard JSON models
    DIR/provisioning/dashboards/smartward.yaml          one file provider per folder
    DIR/provisioning/datasources/smartward.yaml         the TimescaleDB data source

Mount ``DIR/provisioning`` as Grafana's provisioning directory and ``DIR/dashboards`` at
``dashboards_path``. The data source's host, database, user and password are environment
placeholders (``${SMARTWARD_GRAFANA_DB_PASSWORD}``...) that Grafana expands when it reads
the file (Grafana docs, "Provision Grafana": "Using environment variables"): no secret is
written. Give it the read-only role of ``smartward db grant-readonly``, never the owner:
row-level security is what scopes a ward's dashboards to that ward.

One Grafana for every role (``orgs``, from ``plan_orgs``): in Grafana OSS the boundary
between wards is the organisation (each has its own data sources, folders and users), so
each site gets an organisation, and the city one more. Every panel names the data source
uid ``smartward-timescaledb``; data source uids are unique per organisation (Grafana's
``UQE_data_source_org_id_uid`` index), so each organisation's provisioning gives that uid
its own data source, logging in as its own database role, and the same dashboard JSON
works everywhere. Per organisation ``<key>`` (a site id, or ``city``):

    DIR/provisioning/datasources/smartward-<key>.yaml   orgId, user/password placeholders
                                                        SMARTWARD_GRAFANA_DB_USER_<KEY>...
    DIR/provisioning/dashboards/smartward-<key>.yaml    the folders of that role, orgId

A ward's organisation gets the ward folder, an industrial cluster's the cluster folder,
the city's every folder. Organisations must exist before Grafana starts (provisioning
does not create them); two keys sharing an organisation are refused, since both data
sources would claim the one uid. Files of an earlier export that this one would not write
(``smartward*.yaml`` in the two provisioning folders) are removed, so switching layouts
does not leave a data source behind in organisation 1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from contract.registry import Registry
from dashboards.definitions import folders
from dashboards.model import DATASOURCE_TYPE, DATASOURCE_UID, Folder, render

DEFAULT_DASHBOARDS_PATH: Final = "/var/lib/grafana/dashboards/smartward"
DATASOURCE_NAME: Final = "SmartWard TimescaleDB"
ENV_PLACEHOLDERS: Final = {
    "url": "${SMARTWARD_GRAFANA_DB_HOST}",  # host:port
    "database": "${SMARTWARD_GRAFANA_DB_NAME}",
    "user": "${SMARTWARD_GRAFANA_DB_USER}",
    "password": "${SMARTWARD_GRAFANA_DB_PASSWORD}",
    "sslmode": "${SMARTWARD_GRAFANA_DB_SSLMODE}",
}


CITY_KEY: Final = "city"
# Which folders an organisation gets, by the registry's site kind.
KIND_FOLDERS: Final = {"ward": ("smartward-ward",), "industrial_cluster": ("smartward-cluster",)}


@dataclass(frozen=True)
class Org:
    """A Grafana organisation serving one database role."""

    key: str  # a site id, or CITY_KEY
    org_id: int
    folders: tuple[str, ...]  # folder uids

    @property
    def env_suffix(self) -> str:
        return "_" + self.key.upper().replace("-", "_")


def plan_orgs(site_orgs: Sequence[str], city_org: int | None, registry: Registry) -> tuple[Org, ...]:
    """``SITE=ORG_ID`` pairs (``--org``) and the city's organisation id -> the organisations,
    or ValueError with a Vietnamese-first message."""
    kinds = {s.id: s.kind for s in registry.spec.sites}
    orgs: list[Org] = []
    for pair in site_orgs:
        m = re.fullmatch(r"([a-z0-9][a-z0-9-]*)=([0-9]+)", pair.strip())
        if m is None:
            raise ValueError(f"cần dạng ĐỊA_BÀN=MÃ_TỔ_CHỨC / expected SITE=ORG_ID: {pair!r}")
        site, org_id = m.group(1), int(m.group(2))
        if site == CITY_KEY:
            raise ValueError("'city' dành cho --city-org / 'city' is reserved, use --city-org")
        if site not in kinds:
            raise ValueError(f"địa bàn không có trong sổ đăng ký / site not in the registry: {site!r}")
        orgs.append(Org(site, org_id, KIND_FOLDERS[kinds[site]]))
    if city_org is not None:
        orgs.append(Org(CITY_KEY, city_org, tuple(f.uid for f in folders())))
    keys = [o.key for o in orgs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"địa bàn lặp lại / a site is given twice: {keys}")
    ids = [o.org_id for o in orgs]
    if any(i < 1 for i in ids) or len(set(ids)) != len(ids):
        raise ValueError(
            f"mỗi vai trò một tổ chức riêng, mã ≥ 1 / each role needs its own organisation id ≥ 1: {ids}"
        )
    return tuple(orgs)


def datasource_config(org: Org | None = None) -> dict[str, Any]:
    """The data source of one organisation (``org``), or of organisation 1 (None)."""
    suffix = org.env_suffix if org else ""
    user = f"${{SMARTWARD_GRAFANA_DB_USER{suffix}}}"
    password = f"${{SMARTWARD_GRAFANA_DB_PASSWORD{suffix}}}"
    source: dict[str, Any] = {"orgId": org.org_id} if org else {}
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": DATASOURCE_NAME,
                **source,
                "uid": DATASOURCE_UID,
                "type": DATASOURCE_TYPE,
                "access": "proxy",
                "url": ENV_PLACEHOLDERS["url"],
                "user": user,
                "isDefault": True,
                "editable": False,
                "jsonData": {
                    "database": ENV_PLACEHOLDERS["database"],
                    "sslmode": ENV_PLACEHOLDERS["sslmode"],
                    # $__timeGroup becomes time_bucket() (Grafana's TimescaleDB option).
                    "timescaledb": True,
                    "postgresVersion": 1500,
                    "maxOpenConns": 10,
                },
                "secureJsonData": {"password": password},
            }
        ],
    }


def provider_config(all_folders: tuple[Folder, ...], dashboards_path: str, org: Org | None = None
                    ) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                # Provider names are unique across the whole Grafana, organisations included.
                "name": f"{f.uid}@{org.key}" if org else f.uid,
                "orgId": org.org_id if org else 1,
                "folder": f.title,
                "folderUid": f.uid,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": f"{dashboards_path.rstrip('/')}/{f.uid}"},
            }
            for f in all_folders
            if org is None or f.uid in org.folders
        ],
    }


def export(target: Path, dashboards_path: str = DEFAULT_DASHBOARDS_PATH,
           orgs: Sequence[Org] = ()) -> list[Path]:
    """Write every file under ``target`` (created if missing, files overwritten); returns them.
    Without ``orgs``, one data source and the providers in organisation 1."""
    all_folders = folders()
    written: list[Path] = []
    for folder in all_folders:
        fdir = target / "dashboards" / folder.uid
        fdir.mkdir(parents=True, exist_ok=True)
        for d in folder.dashboards:
            path = fdir / f"{d.uid}.json"
            path.write_text(json.dumps(render(d), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            written.append(path)
    files: dict[tuple[str, str], Mapping[str, Any]] = {}
    if not orgs:
        files[("dashboards", "smartward.yaml")] = provider_config(all_folders, dashboards_path)
        files[("datasources", "smartward.yaml")] = datasource_config()
    for org in orgs:
        name = f"smartward-{org.key}.yaml"
        files[("dashboards", name)] = provider_config(all_folders, dashboards_path, org)
        files[("datasources", name)] = datasource_config(org)
    for sub in ("dashboards", "datasources"):
        pdir = target / "provisioning" / sub
        pdir.mkdir(parents=True, exist_ok=True)
        for stale in sorted(pdir.glob("smartward*.yaml")):
            if (sub, stale.name) not in files:
                stale.unlink()
    for (sub, name), doc in files.items():
        path = target / "provisioning" / sub / name
        path.write_text(yaml.safe_dump(dict(doc), allow_unicode=True, sort_keys=False), encoding="utf-8")
        written.append(path)
    return written
