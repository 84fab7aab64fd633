"""deploy/haproxy/smartward.cfg passes ``haproxy -c`` (Debian's haproxy), checks the readiness
route the ops process serves, and keeps the live stream open (docs/scale-out.md, H3)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.servers.haproxy import HaproxyServer, render_config

CFG = Path(__file__).parents[2] / "deploy" / "haproxy" / "smartward.cfg"


def test_haproxy_accepts_the_shipped_and_the_test_configuration(tmp_path: Path) -> None:
    binary = HaproxyServer(tmp_path / "probe", [("ops1", 1)]).binary  # skips (CI: fails) without haproxy
    test_cfg = tmp_path / "test.cfg"
    test_cfg.write_text(render_config(18080, [("a", 18001), ("b", 18002)]), "utf-8")
    for cfg in (CFG, test_cfg):
        done = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, timeout=30, check=False)
        assert done.returncode == 0, (cfg, done.stdout.decode(), done.stderr.decode())
    text = CFG.read_text("utf-8")
    assert "option httpchk GET /readyz" in text and "timeout tunnel 1h" in text
