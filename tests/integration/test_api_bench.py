"""``smartward bench api`` end to end, small: it seeds a store, starts the API in a uvicorn
subprocess, and reports both modes without errors."""

from __future__ import annotations

import pytest

from bench.api import main


def test_bench_api_runs_both_modes_against_a_seeded_server(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--clients", "4", "--duration-s", "1", "--warmup-s", "0.5", "--seed-hours", "1"]
    assert main([*argv, "--incident-days", "2"]) == 0
    out = capsys.readouterr().out
    assert "mode screens: 4 clients" in out and "mode closed: 4 clients" in out
    assert out.count("errors 0") == 2
    for route in ("overview", "incidents"):
        assert out.count(f"  {route} ") == 2
