"""Upload to the provincial agency's receiver by FTP or FTPS (``ftplib``), from
``SMARTWARD_TT10_FTP_URL``: ``ftp://user:pass@host:port/dir`` or ``ftps://...`` (explicit TLS,
RFC 4217: ``AUTH TLS`` on the control connection, ``PROT P`` for the data connections; the
server's certificate is verified against the system's CAs or ``SMARTWARD_TT10_FTP_CA_FILE``).

Each file is stored under a temporary name, renamed to its own name, and its size on the
receiver checked: a receiver that watches its directory never sees half a file, and a
transfer cut short is an error (the file stays in the outbox and is sent again). Sending a
file again is harmless: the same name with the same bytes.
"""

from __future__ import annotations

import ftplib
import io
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from feeds.errors import FeedConfigError, ReceiverUnavailable

logger = logging.getLogger(__name__)

# What ftplib and the network raise when a receiver is away, refuses, or cuts a transfer.
_TRANSIENT: tuple[type[BaseException], ...] = (ftplib.Error, OSError, EOFError)


class _FtpTls(ftplib.FTP_TLS):
    """FTPS whose data connections resume the control connection's TLS session: servers such
    as vsftpd (``require_ssl_reuse``, its default) and FileZilla Server refuse a data
    connection that does not (RFC 4217 §10.2 leaves it to them), and ``ftplib`` does not."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            session = self.sock.session if isinstance(self.sock, ssl.SSLSocket) else None
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


@dataclass(frozen=True, slots=True)
class Upload:
    name: str
    data: bytes


class Uploader(Protocol):
    def send(self, files: Sequence[Upload], on_sent: Callable[[Upload], None]) -> None:
        """Send ``files`` in order, calling ``on_sent`` after each one the receiver has;
        ``ReceiverUnavailable`` at the first that fails (the rest are not tried)."""
        ...

    @property
    def target(self) -> str:
        """Where files go, without the password (for logs and the upload log)."""
        ...


@dataclass(frozen=True, slots=True)
class FtpTarget:
    tls: bool
    host: str
    port: int
    user: str
    password: str
    directory: str

    @classmethod
    def parse(cls, url: str) -> FtpTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("ftp", "ftps"):
            raise FeedConfigError("SMARTWARD_TT10_FTP_URL must be ftp://user:pass@host:port/dir or ftps://...")
        try:
            port = parts.port or 21
        except ValueError as exc:
            raise FeedConfigError(f"SMARTWARD_TT10_FTP_URL: bad port: {exc}") from exc
        if not parts.hostname:
            raise FeedConfigError("SMARTWARD_TT10_FTP_URL has no host")
        return cls(
            tls=parts.scheme == "ftps",
            host=parts.hostname,
            port=port,
            user=unquote(parts.username or "anonymous"),
            password=unquote(parts.password or ""),
            directory=unquote(parts.path or "/"),
        )

    def describe(self) -> str:
        scheme = "ftps" if self.tls else "ftp"
        return f"{scheme}://{self.user}@{self.host}:{self.port}{self.directory}"


class FtpUploader:
    def __init__(self, target: FtpTarget, *, timeout_s: float = 30.0, ca_file: Path | None = None) -> None:
        self._t = target
        self._timeout_s = timeout_s
        self._ca_file = ca_file

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 30.0, ca_file: Path | None = None) -> FtpUploader:
        return cls(FtpTarget.parse(url), timeout_s=timeout_s, ca_file=ca_file)

    @property
    def target(self) -> str:
        return self._t.describe()

    def _connect(self) -> ftplib.FTP:
        t = self._t
        ftp: ftplib.FTP
        if t.tls:
            ctx = ssl.create_default_context(cafile=str(self._ca_file) if self._ca_file else None)
            tls = _FtpTls(context=ctx, timeout=self._timeout_s)
            tls.connect(t.host, t.port)
            tls.auth()
            tls.login(t.user, t.password)
            tls.prot_p()
            ftp = tls
        else:
            ftp = ftplib.FTP(timeout=self._timeout_s)
            ftp.connect(t.host, t.port)
            ftp.login(t.user, t.password)
        self._enter(ftp, t.directory)
        return ftp

    @staticmethod
    def _enter(ftp: ftplib.FTP, directory: str) -> None:
        """Change to ``directory``, creating what is missing of it."""
        try:
            ftp.cwd(directory)
            return
        except ftplib.error_perm:
            pass
        if directory.startswith("/"):
            ftp.cwd("/")
        for part in (p for p in directory.split("/") if p):
            try:
                ftp.cwd(part)
            except ftplib.error_perm:
                ftp.mkd(part)
                ftp.cwd(part)

    @staticmethod
    def _put(ftp: ftplib.FTP, f: Upload) -> None:
        tmp = f"{f.name}.tmp"
        ftp.storbinary(f"STOR {tmp}", io.BytesIO(f.data))
        try:
            ftp.rename(tmp, f.name)
        except ftplib.error_perm:
            # Some servers refuse to rename over an existing file (a file sent before whose
            # answer was lost): it is the same cycle, so replace it.
            ftp.delete(f.name)
            ftp.rename(tmp, f.name)
        try:
            size = ftp.size(f.name)
        except ftplib.error_perm as exc:
            if not str(exc).startswith(("500", "502", "504")):
                raise
            return  # SIZE is an extension (RFC 3659) the receiver lacks: the transfer's 226 stands
        if size != len(f.data):
            raise ftplib.error_reply(f"{f.name}: {size} bytes on the receiver, {len(f.data)} sent")

    def send(self, files: Sequence[Upload], on_sent: Callable[[Upload], None]) -> None:
        if not files:
            return
        try:
            ftp = self._connect()
        except _TRANSIENT as exc:
            raise ReceiverUnavailable(f"{self.target}: {_describe(exc)}") from exc
        try:
            for f in files:
                try:
                    self._put(ftp, f)
                except _TRANSIENT as exc:
                    raise ReceiverUnavailable(f"{self.target}: {f.name}: {_describe(exc)}") from exc
                on_sent(f)  # outside the except: a local error is not the receiver's
        finally:
            _close(ftp)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}".strip()


def _close(ftp: ftplib.FTP) -> None:
    try:
        ftp.quit()
    except _TRANSIENT:
        ftp.close()
