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
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import yaml

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


def datasource_config() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": DATASOURCE_NAME,
                "uid": DATASOURCE_UID,
                "type": DATASOURCE_TYPE,
                "access": "proxy",
                "url": ENV_PLACEHOLDERS["url"],
                "user": ENV_PLACEHOLDERS["user"],
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
                "secureJsonData": {"password": ENV_PLACEHOLDERS["password"]},
            }
        ],
    }


def provider_config(all_folders: tuple[Folder, ...], dashboards_path: str) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {
                "name": f.uid,
                "orgId": 1,
                "folder": f.title,
                "folderUid": f.uid,
                "type": "file",
                "disableDeletion": True,
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": f"{dashboards_path.rstrip('/')}/{f.uid}"},
            }
            for f in all_folders
        ],
    }


def export(target: Path, dashboards_path: str = DEFAULT_DASHBOARDS_PATH) -> list[Path]:
    """Write every file under ``target`` (created if missing, files overwritten); returns them."""
    all_folders = folders()
    written: list[Path] = []
    for folder in all_folders:
        fdir = target / "dashboards" / folder.uid
        fdir.mkdir(parents=True, exist_ok=True)
        for d in folder.dashboards:
            path = fdir / f"{d.uid}.json"
            path.write_text(json.dumps(render(d), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            written.append(path)
    for sub, name, doc in (
        ("dashboards", "smartward.yaml", provider_config(all_folders, dashboards_path)),
        ("datasources", "smartward.yaml", datasource_config()),
    ):
        pdir = target / "provisioning" / sub
        pdir.mkdir(parents=True, exist_ok=True)
        path = pdir / name
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        written.append(path)
    return written
