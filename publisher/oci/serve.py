"""The local OCI layout served read-only over the distribution API, so a container engine can pull it.

Engines pull from registries only. Handing them a whole image as an archive costs a full copy of
every layer each time (about half a second for a function on the python base); a pull over this
server transfers only the layers the engine lacks (a code-only change: a few kilobytes, ~50 ms).
One server per process and layout, on a random loopback port, answering only under a random
path prefix, so other local users cannot list or read the images through it. It serves
manifests and blobs by digest, nothing else.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from publisher.errors import FaaspubError
from publisher.oci.layout import OciLayout

_ROUTE = re.compile(
    r"^/v2/(?P<token>[0-9a-f]{32})/(?P<repo>.+)/(?P<kind>manifests|blobs)/(?P<digest>sha256:[0-9a-f]{64})$"
)


class LayoutServer:
    """A running read-only registry over one :class:`OciLayout`; ``prefix`` is what image names start with."""

    def __init__(self, layout: OciLayout) -> None:
        self.layout = layout
        self.token = secrets.token_hex(16)
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, name="oci-layout-server", daemon=True).start()

    @property
    def prefix(self) -> str:
        """``127.0.0.1:PORT/TOKEN``: an engine pulls ``{prefix}/{repository}@{digest}``."""
        return f"127.0.0.1:{self._http.server_address[1]}/{self.token}"

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def _handler(server: LayoutServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(body=True)

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            if self.path == "/v2/":
                self._send(HTTPStatus.OK, b"{}", "application/json", body)
                return
            match = _ROUTE.match(self.path.split("?", 1)[0])
            if match is None or not secrets.compare_digest(match["token"], server.token):
                self._send(
                    HTTPStatus.NOT_FOUND, b'{"errors":[{"code":"NAME_UNKNOWN"}]}', "application/json", body
                )
                return
            digest = match["digest"]
            try:
                path = server.layout.blob_file(digest)
            except FaaspubError:
                code = "MANIFEST_UNKNOWN" if match["kind"] == "manifests" else "BLOB_UNKNOWN"
                self._send(
                    HTTPStatus.NOT_FOUND,
                    f'{{"errors":[{{"code":"{code}"}}]}}'.encode(),
                    "application/json",
                    body,
                )
                return
            if match["kind"] == "manifests":
                data = path.read_bytes()
                media = _media_type(data)
                self._send(HTTPStatus.OK, data, media, body, digest)
                return
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if body:
                with open(path, "rb") as src:
                    shutil.copyfileobj(src, self.wfile, 1024 * 1024)

        def _send(self, status: HTTPStatus, data: bytes, media: str, body: bool, digest: str = "") -> None:
            self.send_response(status)
            self.send_header("Content-Type", media)
            self.send_header("Content-Length", str(len(data)))
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # engines probe a lot; the pulls that matter are logged by the caller

    return Handler


def _media_type(manifest: bytes) -> str:
    try:
        media = json.loads(manifest).get("mediaType")
    except ValueError:
        media = None
    return str(media or "application/vnd.oci.image.manifest.v1+json")


_servers: dict[str, LayoutServer] = {}
_lock = threading.Lock()


def serve_layout(layout: OciLayout) -> LayoutServer:
    """This process's server for ``layout`` (started on first use, stopped when the process ends)."""
    with _lock:
        server = _servers.get(str(layout.root))
        if server is None:
            server = _servers[str(layout.root)] = LayoutServer(layout)
        return server
