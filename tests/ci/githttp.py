"""A read-only git smart-HTTP server for tests: git's own ``git http-backend`` behind a tiny CGI bridge.

It stands in for a GitLab instance's git endpoint, so gitlab-ci-local clones ``include: project``
and ``include: component`` files the way it would from GitLab (``http://HOST:PORT/GROUP/PROJECT.git``).
Bound to 127.0.0.1 on a random port; requests are logged for assertions.
"""

from __future__ import annotations

import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

GIT_HTTP_BACKEND = ["git", "http-backend"]


class GitHttpServer:
    """Serves every bare repository under ``root`` (``root/group/project.git``) over smart HTTP."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._cgi()

            def do_POST(self) -> None:
                self._cgi()

            def log_message(self, format: str, *args: object) -> None:
                return

            def _cgi(self) -> None:
                url = urlsplit(self.path)
                server.requests.append(f"{self.command} {url.path}")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(server.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": url.path,
                    "QUERY_STRING": url.query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_ADDR": self.client_address[0],
                    "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                }
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                proc = subprocess.run(GIT_HTTP_BACKEND, input=body, env=env, capture_output=True, timeout=60)
                head, _, payload = proc.stdout.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = proc.stdout.partition(b"\n\n")
                status, headers = 200, []
                for line in head.decode("latin-1").splitlines():
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif key:
                        headers.append((key, value.strip()))
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, project_path: str) -> str:
        return f"http://{self.host}/{project_path}.git"

    def publish(self, work_tree: Path, project_path: str) -> Path:
        """Push every branch and tag of ``work_tree`` into the bare repository ``project_path``."""
        bare = self.root / f"{project_path}.git"
        if not bare.exists():
            bare.parent.mkdir(parents=True, exist_ok=True)
            git("init", "--bare", "--quiet", str(bare), cwd=self.root)
        git(
            "push",
            "--quiet",
            "--force",
            str(bare),
            "refs/heads/*:refs/heads/*",
            "refs/tags/*:refs/tags/*",
            cwd=work_tree,
        )
        return bare

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def git(*args: str, cwd: Path) -> str:
    """Run git with a fixed identity; raises with git's stderr on failure."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "faaspub test",
        "GIT_AUTHOR_EMAIL": "test@faaspub.invalid",
        "GIT_COMMITTER_NAME": "faaspub test",
        "GIT_COMMITTER_EMAIL": "test@faaspub.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()
