"""``smartward.db_probe.missing_database``: what a read-only command asks before it opens a
database (it must never create one)."""

from __future__ import annotations

import socket
from pathlib import Path

from smartward.db_probe import missing_database, redact


def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    message = missing_database(f"sqlite:///{path}")
    assert message is not None and message.startswith("Không có cơ sở dữ liệu tại sqlite:///")
    assert str(path) in message and not path.exists()
    path.write_bytes(b"")
    assert missing_database(f"sqlite:///{path}") is None


def test_a_postgresql_server_that_does_not_answer_is_reported_without_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        port = s.getsockname()[1]
        message = missing_database(f"postgresql://ops:s3cret@127.0.0.1:{port}/ward", timeout_s=1)
    assert message is not None and message.startswith("Máy chủ cơ sở dữ liệu tại postgresql://ops:***@")
    assert "s3cret" not in message


def test_redact_keeps_the_user_and_hides_the_password() -> None:
    assert redact("postgresql://ops:pw@db:5432/x") == "postgresql://ops:***@db:5432/x"
    assert redact("postgresql://ops@db/x") == "postgresql://ops@db/x"
    assert redact("mqtt://gw:p@a:b@broker:1883") == "mqtt://gw:***@broker:1883"
    assert redact("sqlite:///./smartward.db") == "sqlite:///./smartward.db"
