"""faaspub_runtime.events: CloudEvent parsing, reading inputs, writing outputs (local, WebDAV, s3)."""

from __future__ import annotations

import io
import os
import stat
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from faaspub_runtime import EventError, StorageEvent, make_cloudevent, open_input, output_path, write_output
from hypothesis import given
from hypothesis import strategies as st

TOKEN = "eyJhbGciOi.test-token.5ig"


def _event(storage: str = "local", path: str = "/data/raw/run42.h5", **overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "source": f"faaspub/{storage}/test",
        "kind": "created",
        "path": path,
        "size": 11,
        "checksum": "adler32:1a0b045d",
        "url": None,
        "event_id": "ev-1",
        "time": "2025-03-01T12:00:00Z",
        "storage": storage,
    }
    return make_cloudevent(**{**fields, **overrides})


# --- the event format ------------------------------------------------------------------------------


def test_make_cloudevent_shape() -> None:
    event = _event(url="https://dcache.example.org:2880/data/raw/run42.h5", storage="dcache")
    assert event == {
        "specversion": "1.0",
        "id": "ev-1",
        "source": "faaspub/dcache/test",
        "type": "storage.object.created",
        "subject": "/data/raw/run42.h5",
        "time": "2025-03-01T12:00:00Z",
        "datacontenttype": "application/json",
        "data": {
            "path": "/data/raw/run42.h5",
            "size": 11,
            "checksum": "adler32:1a0b045d",
            "url": "https://dcache.example.org:2880/data/raw/run42.h5",
            "storage": "dcache",
        },
    }


def test_parse_fields() -> None:
    parsed = StorageEvent.from_cloudevent(_event(kind="deleted", size=None, checksum=None))
    assert parsed.kind == "deleted"
    assert parsed.type == "storage.object.deleted"
    assert parsed.name == "run42.h5"
    assert parsed.time == datetime(2025, 3, 1, 12, tzinfo=UTC)
    assert (parsed.size, parsed.checksum, parsed.url) == (None, None, None)


@pytest.mark.parametrize("wrap", ["bare", "nested", "params-with-extras"])
def test_accepted_envelopes(wrap: str) -> None:
    event = _event()
    envelopes = {"bare": event, "nested": {"event": event}, "params-with-extras": {**event, "X": "1"}}
    params = envelopes[wrap]
    assert StorageEvent.from_cloudevent(params).path == "/data/raw/run42.h5"


@given(
    path=st.text(alphabet=st.characters(exclude_categories=["Cs"]), min_size=1).map(lambda s: "/" + s),
    size=st.none() | st.integers(min_value=0, max_value=2**63),
    checksum=st.none() | st.text(min_size=1),
    kind=st.sampled_from(["created", "deleted"]),
    storage=st.sampled_from(["dcache", "s3", "local"]),
)
def test_round_trip(path: str, size: int | None, checksum: str | None, kind: str, storage: str) -> None:
    event = _event(path=path, size=size, checksum=checksum, kind=kind, storage=storage)
    parsed = StorageEvent.from_cloudevent(event)
    assert (parsed.path, parsed.subject, parsed.size, parsed.checksum, parsed.kind, parsed.storage) == (
        path,
        path,
        size,
        checksum,
        kind,
        storage,
    )


def _broken(change: Any) -> dict[str, Any]:
    event = _event()
    change(event)
    return event


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        (_broken(lambda e: e.pop("specversion")), "no CloudEvent found"),
        (_broken(lambda e: e.update(specversion="0.3")), "'specversion' must be '1.0'"),
        (_broken(lambda e: e.pop("id")), "'id' must be a non-empty string"),
        (_broken(lambda e: e.update(source="")), "'source' must be a non-empty string"),
        (_broken(lambda e: e.update(type="storage.object.modified")), "'type' must be one of"),
        (_broken(lambda e: e.update(subject="/elsewhere")), "differs from 'data.path'"),
        (_broken(lambda e: e.update(time="yesterday")), "not an RFC 3339 timestamp"),
        (_broken(lambda e: e.update(time="2025-03-01T12:00:00")), "needs a time zone"),
        (_broken(lambda e: e.update(datacontenttype="text/plain")), "'datacontenttype' must be"),
        (_broken(lambda e: e.update(data="a string")), "'data' must be an object"),
        (_broken(lambda e: e["data"].update(size=-1)), "'data.size' must be a non-negative integer"),
        (_broken(lambda e: e["data"].update(size=True)), "'data.size' must be a non-negative integer"),
        (_broken(lambda e: e["data"].update(size="11")), "'data.size' must be a non-negative integer"),
        (_broken(lambda e: e["data"].update(storage="ftp")), "'data.storage' must be one of"),
        (_broken(lambda e: e["data"].update(url=5)), "'data.url' must be a non-empty string or null"),
        (_broken(lambda e: e["data"].pop("path")), "'data.path' must be a non-empty string"),
        ({"event": "not an object"}, "no CloudEvent found"),
    ],
)
def test_invalid_events(params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(EventError, match=None) as caught:
        StorageEvent.from_cloudevent(params)
    assert fragment in str(caught.value)


def test_not_a_mapping() -> None:
    with pytest.raises(EventError, match="must be a JSON object, not list"):
        StorageEvent.from_cloudevent(cast(Any, [1, 2]))


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"kind": "modified"}, "event kind must be one of"),
        ({"storage": "ftp"}, "'data.storage'"),
        ({"time": "noon"}, "RFC 3339"),
        ({"path": ""}, "'subject'"),
    ],
)
def test_make_cloudevent_rejects(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(EventError) as caught:
        _event(**change)
    assert fragment in str(caught.value)


# --- local storage -----------------------------------------------------------------------------


def test_local_read_and_write_next_to_input(tmp_path: Path) -> None:
    source = tmp_path / "run42.h5"
    source.write_bytes(b"hello \xe2\x98\x83")
    event = _event(path=str(source))
    with open_input(event) as fh:
        assert fh.read() == b"hello \xe2\x98\x83"
    with open_input(event, "r") as fh:
        assert fh.read() == "hello ☃"
    assert output_path(event, ".summary.json") == f"{source}.summary.json"
    written = write_output(event, ".summary.json", '{"ok": true}')
    assert Path(written).read_text() == '{"ok": true}'
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run42.h5", "run42.h5.summary.json"]


@pytest.mark.parametrize("suffix", ["", "/x", "../x", "a\x00b"])
def test_bad_suffix(suffix: str) -> None:
    with pytest.raises(EventError, match="output suffix"):
        output_path(_event(), suffix)


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        open_input(_event(), "w")


# --- WebDAV (dCache) over HTTP ---------------------------------------------------------------------


@dataclass
class FakeWebDav:
    """A tiny WebDAV door: GET/PUT need the bearer token; /door/* redirects to /pool/* (like dCache)."""

    url: str
    files: dict[str, bytes] = field(default_factory=dict)
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)


@pytest.fixture
def webdav() -> Iterator[FakeWebDav]:
    state = FakeWebDav(url="")

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            auth = self.headers.get("Authorization")
            state.seen.append((self.command, self.path, auth))
            if self.path.startswith("/pool/") or self.path.startswith("/public/"):
                return True  # pools trust the door's one-time redirect; public paths need no auth
            return auth == f"Bearer {TOKEN}"

        def do_GET(self) -> None:
            if not self._authorised():
                self._send(401)
            elif self.path.startswith("/door/"):
                self._send(302, headers={"Location": self.path.replace("/door/", "/pool/", 1)})
            else:
                name = self.path.split("?")[0].replace("/pool/", "/", 1).replace("/public/", "/", 1)
                body = state.files.get(name)
                self._send(200, body) if body is not None else self._send(404)

        def do_PUT(self) -> None:
            length = int(self.headers["Content-Length"])
            body = self.rfile.read(length)
            if not self._authorised():
                self._send(401)
                return
            state.files[self.path] = body
            self._send(201)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def test_webdav_get_with_bearer_token(webdav: FakeWebDav, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCACHE_TOKEN", TOKEN)
    webdav.files["/data/run42.h5"] = b"\x89HDF\r\n"
    event = _event("dcache", path="/data/run42.h5", url=f"{webdav.url}/data/run42.h5")
    with open_input(event) as fh:
        assert fh.read() == b"\x89HDF\r\n"
    assert webdav.seen == [("GET", "/data/run42.h5", f"Bearer {TOKEN}")]


def test_webdav_token_name_is_configurable(webdav: FakeWebDav, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCACHE_TOKEN", raising=False)
    monkeypatch.setenv("XFEL_STORAGE_TOKEN", TOKEN)
    webdav.files["/data/a.txt"] = "Grüße".encode()
    event = _event("dcache", path="/data/a.txt", url=f"{webdav.url}/data/a.txt")
    with open_input(event, "r", token_env="XFEL_STORAGE_TOKEN") as fh:
        assert fh.read() == "Grüße"


def test_webdav_token_not_forwarded_on_redirect(webdav: FakeWebDav, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCACHE_TOKEN", TOKEN)
    webdav.files["/data/run42.h5"] = b"payload"
    event = _event("dcache", path="/data/run42.h5", url=f"{webdav.url}/door/data/run42.h5")
    with open_input(event) as fh:
        assert fh.read() == b"payload"
    assert webdav.seen == [
        ("GET", "/door/data/run42.h5", f"Bearer {TOKEN}"),
        ("GET", "/pool/data/run42.h5", None),
    ]


def test_webdav_without_token_explains(webdav: FakeWebDav, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DCACHE_TOKEN", raising=False)
    event = _event("dcache", path="/data/x", url=f"{webdav.url}/data/x")
    with pytest.raises(EventError, match=r"GET http://127\.0\.0\.1:\d+/data/x failed: HTTP 401 .*secret"):
        open_input(event)


def test_webdav_errors_never_show_token_or_query(webdav: FakeWebDav, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCACHE_TOKEN", TOKEN)
    event = _event("dcache", path="/data/missing", url=f"{webdav.url}/data/missing?authz=sig-secret")
    with pytest.raises(EventError) as caught:
        open_input(event)
    message = str(caught.value)
    assert "HTTP 404" in message
    assert TOKEN not in message and "sig-secret" not in message


def test_token_never_sent_over_plain_http_to_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCACHE_TOKEN", TOKEN)
    event = _event("dcache", path="/data/x", url="http://dcache.example.org:2880/data/x")
    with pytest.raises(EventError, match=r"refusing to send the token over plain http to dcache\.example"):
        open_input(event)


def test_webdav_put_next_to_input(webdav: FakeWebDav, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCACHE_TOKEN", TOKEN)
    event = _event("dcache", path="/data/run 42.h5", url=f"{webdav.url}/data/run%2042.h5")
    target = write_output(event, ".summary.json", '{"peaks": [2]}')
    assert target == f"{webdav.url}/data/run%2042.h5.summary.json"
    assert webdav.files["/data/run%2042.h5.summary.json"] == b'{"peaks": [2]}'
    assert webdav.seen == [("PUT", "/data/run%2042.h5.summary.json", f"Bearer {TOKEN}")]


# --- S3 ----------------------------------------------------------------------------------------


def test_s3_presigned_url_is_read_without_token(webdav: FakeWebDav, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCACHE_TOKEN", TOKEN)
    webdav.files["/bucket/key.csv"] = b"a,b\n"
    event = _event("s3", path="bucket/key.csv", url=f"{webdav.url}/public/bucket/key.csv?X-Amz-Signature=abc")
    with open_input(event) as fh:
        assert fh.read() == b"a,b\n"
    assert webdav.seen[0][2] is None


def test_s3_url_without_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes ``import boto3`` fail
    event = _event("s3", path="bucket/key.csv", url="s3://bucket/key.csv")
    with pytest.raises(EventError, match="needs boto3"):
        open_input(event)
    with pytest.raises(EventError, match="needs boto3"):
        write_output(event, ".out", b"x")


def test_s3_with_boto3(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []

    class Client:
        def get_object(self, **kwargs: Any) -> dict[str, Any]:
            calls.append(("get", kwargs))
            return {"Body": io.BytesIO(b"data")}

        def put_object(self, **kwargs: Any) -> None:
            calls.append(("put", kwargs))

    def client(service: str, endpoint_url: str | None = None) -> Client:
        calls.append(("client", (service, endpoint_url)))
        return Client()

    fake = types.ModuleType("boto3")
    fake.client = client  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boto3", fake)
    monkeypatch.setenv("S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    event = _event("s3", path="bucket/raw/key.csv", url="s3://bucket/raw/key.csv")
    with open_input(event) as fh:
        assert fh.read() == b"data"
    assert write_output(event, ".out", b"result") == "s3://bucket/raw/key.csv.out"
    assert calls == [
        ("client", ("s3", "http://127.0.0.1:9000")),
        ("get", {"Bucket": "bucket", "Key": "raw/key.csv"}),
        ("client", ("s3", "http://127.0.0.1:9000")),
        ("put", {"Bucket": "bucket", "Key": "raw/key.csv.out", "Body": b"result"}),
    ]


def test_remote_event_without_url() -> None:
    with pytest.raises(EventError, match=r"has no 'data\.url'"):
        open_input(_event("dcache", url=None))
