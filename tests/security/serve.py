"""A real ``faaspub serve`` for the bounded-input tests and ``bench/security.py``.

Its GitLab never answers (a socket that is listened on and never accepted from), as when GitLab
hangs; no webhook or S3 token is configured, so every webhook is unauthenticated.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from publisher.catalogue.auth import create_token
from publisher.config import load_settings
from publisher.core.context import Context
from publisher.db.engine import transaction
from tests.e2e.stack import Service, start_service

MIB = 1 << 20


@dataclass
class Served:
    """The running service, its operator read token and the silent GitLab's address."""

    service: Service
    token: str
    gitlab: str

    def rss_mb(self) -> float:
        """Resident memory of the service process (``VmRSS``), in MB."""
        status = Path(f"/proc/{self.service.process.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return kb / 1024


@contextmanager
def silent_gitlab() -> Iterator[str]:
    """A loopback address that accepts connections (the kernel does) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def serving(workdir: Path) -> Iterator[Served]:
    with silent_gitlab() as gitlab:
        (workdir / "gitlab-token").write_text("glpat-never-used\n")
        config = workdir / "faaspub.toml"
        config.write_text(
            f'state_dir = "{workdir / "state"}"\n'
            "[server]\nworkers = 0\n"
            f'[database]\nurl = "sqlite:///{workdir / "faaspub.db"}"\n'
            f'[gitlab]\nurl = "{gitlab}"\ntoken_file = "{workdir / "gitlab-token"}"\ngroups = ["fs-sc"]\n'
            f'[storage.local]\nroot = "{workdir / "data"}"\n'
        )
        context = Context(load_settings(config))
        with transaction(context.sessions) as session:
            _, token = create_token(session, "*", "read", "bounded-input test")
        context.engine.dispose()
        service = start_service(workdir, config)
        try:
            yield Served(service, token, gitlab)
        finally:
            service.stop()


def _request_head(url: str, path: str, size: int, headers: dict[str, str] | None) -> tuple[str, int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {size}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return host, int(port), ("\r\n".join(lines) + "\r\n\r\n").encode()


def answer_before_body(url: str, path: str, size: int, wait_s: float = 10.0) -> int | None:
    """Declare a ``size``-byte body, send its first 64 KiB only, and wait for an answer.

    The status, when the service answered without the rest of the body; None when it waited for it.
    """
    host, port, head = _request_head(url, path, size, None)
    with socket.create_connection((host, port), timeout=wait_s) as sock:
        sock.sendall(head + b"x" * min(size, 64 * 1024))
        try:
            answer = sock.recv(4096)
        except TimeoutError:
            return None
    return int(answer.split(b" ", 2)[1]) if answer else None


def post_unread(url: str, path: str, size: int, headers: dict[str, str] | None = None) -> tuple[int, int]:
    """POST a body of ``size`` bytes; returns (status, bytes sent before the answer came).

    The body is sent in 1 MiB pieces, checking for an answer between them: a service that decides
    before reading stops the upload early.
    """
    host, port, head = _request_head(url, path, size, headers)
    sent = 0
    with socket.create_connection((host, port), timeout=120) as sock:
        sock.sendall(head)
        piece = b"x" * MIB
        while sent < size:
            try:
                sock.sendall(piece[: size - sent])
            except OSError:  # the service closed the connection after answering
                break
            sent += min(MIB, size - sent)
            if _answered(sock):
                break
        answer = sock.recv(4096)
    return int(answer.split(b" ", 2)[1]), sent


def _answered(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)
