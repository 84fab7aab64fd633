"""An FTP / FTPS receiver for tests (pyftpdlib; its TLS handler needs pyOpenSSL), in a thread,
on a loopback port that survives a stop and a start again (a receiver's outage).

``FtpReceiver(root, tls=(cert, key))``: ``start()``, ``stop()``, ``url`` (with the test
account), ``received`` (names in the order their uploads completed), ``files()`` (what is on
the server), ``stor_budget`` (uploads accepted before it refuses the rest with 451).
``self_signed(dir)`` writes a certificate and key for 127.0.0.1 / localhost.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading
from pathlib import Path
from typing import Any

from tests.servers._proc import free_port

USER = "tt10"
PASSWORD = "p@ss:word/1"  # characters that must be URL-encoded in SMARTWARD_TT10_FTP_URL


def self_signed(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files of a self-signed CA certificate for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tt10 test receiver")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "receiver.crt", directory / "receiver.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class FtpReceiver:
    def __init__(self, root: Path, *, tls: tuple[Path, Path] | None = None,
                 directory: str = "/inbox") -> None:
        self.root = root
        self.tls = tls
        self.directory = directory
        self.port = free_port()
        self.received: list[str] = []
        # STORs accepted before the receiver starts answering 451 (a full disk, a cut link);
        # None: no limit.
        self.stor_budget: int | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._server: Any = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        from urllib.parse import quote

        scheme = "ftps" if self.tls else "ftp"
        return f"{scheme}://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}{self.directory}"

    def _handler(self) -> type[Any]:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler

        receiver = self
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(self.root), perm="elradfmwMT")
        base: type[Any] = TLS_FTPHandler if self.tls else FTPHandler

        class Handler(base):  # type: ignore[misc,valid-type]
            def ftp_STOR(self, file: str, mode: str = "w") -> Any:
                with receiver._lock:
                    if receiver.stor_budget is not None:
                        if receiver.stor_budget <= 0:
                            self.respond("451 Requested action aborted: local error in processing.")
                            return None
                        receiver.stor_budget -= 1
                return super().ftp_STOR(file, mode)

            def on_file_received(self, file: str) -> None:
                with receiver._lock:
                    receiver.received.append(Path(file).name.removesuffix(".tmp"))

        Handler.authorizer = authorizer
        if self.tls:
            Handler.certfile = str(self.tls[0])
            Handler.keyfile = str(self.tls[1])
            Handler.tls_control_required = True
            Handler.tls_data_required = True
        return Handler

    def start(self) -> None:
        from pyftpdlib.servers import FTPServer

        assert self._thread is None, "already running"
        self._server = FTPServer(("127.0.0.1", self.port), self._handler())
        self._stop.clear()
        server = self._server

        def serve() -> None:
            try:
                while not self._stop.is_set():
                    server.ioloop.loop(timeout=0.05, blocking=False)
            finally:
                server.close_all()

        self._thread = threading.Thread(target=serve, name=f"ftp-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The receiver goes away: its port refuses connections until ``start``."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive()
        self._thread = None

    def files(self) -> dict[str, bytes]:
        inbox = self.root / self.directory.strip("/")
        if not inbox.exists():
            return {}
        return {p.name: p.read_bytes() for p in sorted(inbox.iterdir()) if p.is_file()}

    def __enter__(self) -> FtpReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
