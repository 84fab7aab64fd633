"""The operations center's HTTP API (``/api/v1``), built by :func:`ops_center.api.app.create_app`."""
