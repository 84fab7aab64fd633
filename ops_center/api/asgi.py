"""The API as an ASGI application built from the environment (``SMARTWARD_*``), for servers
that import it by name, one instance per worker process::

    uvicorn --factory ops_center.api.asgi:app_from_env --workers 2 --loop uvloop --http httptools \
        --no-proxy-headers

(``--no-proxy-headers``: the API reads ``X-Forwarded-For`` itself, only from the proxies of
``SMARTWARD_TRUSTED_PROXIES``; uvicorn's own handling trusts 127.0.0.1 by default.)

Each worker process builds its own repository (a PostgreSQL pool of ``db_pool_max``
connections, or its own SQLite connection), its own change feed, KPI cache and login rate
limiter: nothing here is shared between processes. So with N workers the login limits
multiply by N (ops_center/security/ratelimit.py), each process computes a site's overview at
most once per ``overview_cache_s``, and the live stream of a worker carries only what that
worker publishes (its KPI events, the actions it served); a deployment that runs the ops
service in-process must feed every worker's stream, or run one worker.

Device commands: with ``SMARTWARD_COMMANDS_MQTT_URL`` set, every worker opens its own command
link on that broker account, and under the shipped Mosquitto configuration
(``use_username_as_clientid``) two workers on one account take each other's session over. Give
each worker its own account (``smartward mqtt credentials`` makes one, ``ops-api``), or run the
API with commands as a single worker.
"""

from __future__ import annotations

from fastapi import FastAPI

from ops_center.adapters.factory import open_repository
from ops_center.api.app import create_app
from ops_center.feed import Feed
from ops_center.settings import OpsSettings


def app_from_env() -> FastAPI:
    settings = OpsSettings()
    repo = open_repository(settings.db_url, pool_min=settings.db_pool_min, pool_max=settings.db_pool_max)
    feed = Feed(ring_size=settings.stream_ring_size, queue_max=settings.stream_queue_max)
    return create_app(settings, repo, feed, on_shutdown=repo.close)
