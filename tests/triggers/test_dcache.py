"""The dCache source against the fake frontend: uploads, recursion, resume, loss, competition, bad input."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from publisher.config import DcacheStorageSettings
from publisher.core.context import Context
from publisher.errors import ConfigError
from publisher.triggers.bindings import BindingCache
from publisher.triggers.dcache import DcacheSource
from publisher.triggers.dcache_api import BearerAuth, DcacheClient, DcacheError, auth_from_settings
from publisher.triggers.intake import Intake
from publisher.triggers.store import EventRow, load_cursor
from tests.fakes.dcache_fixture import MACAROON, PASSWORD, TOKEN
from tests.fakes.dcache_server import FakeDcache
from tests.triggers.conftest import Publish, wait_for


def make_source(context: Context, fake: FakeDcache, **options: float) -> DcacheSource:
    client = DcacheClient(fake.url, BearerAuth(TOKEN), idle_timeout_s=0.5)
    return DcacheSource(
        client,
        context.sessions,
        BindingCache(context.sessions, ttl_s=0),
        channel_timeout_s=600,
        reconnect_s=0.05,
        competing_backoff_s=options.get("competing_backoff_s", 0.3),
        cursor_every_s=0.0,
    )


@contextmanager
def running(context: Context, fake: FakeDcache, **options: float) -> Iterator[DcacheSource]:
    source = make_source(context, fake, **options)
    intake = Intake(context.sessions, BindingCache(context.sessions, ttl_s=0))
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(intake, stop.is_set), daemon=True)
    thread.start()
    try:
        wait_for(lambda: fake.connected(), what="the source to connect")
        yield source
    finally:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        source.client.close()


def events(context: Context, kind: str = "created") -> list[str]:
    with context.sessions() as session:
        return sorted(session.scalars(select(EventRow.path).where(EventRow.kind == kind)).all())


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("faaspub_storage_events_rejected_total", {"reason": reason}) or 0.0


def test_upload_is_one_created_event_with_size_and_identity(
    context: Context, publish: Publish, dcache_server: FakeDcache
) -> None:
    dcache_server.mkdir("/data/uploads")
    publish("fn", [{"source": "dcache", "path": "/data/uploads", "match": "*.dat"}])
    with running(context, dcache_server):
        entry = dcache_server.upload("/data/uploads/run42.dat", size=4096, modifies=5)
        dcache_server.upload("/data/uploads/notes.txt")
        wait_for(lambda: events(context), what="the created event")
    assert events(context) == ["/data/uploads/run42.dat"]
    with context.sessions() as session:
        row = session.scalars(select(EventRow)).one()
    assert row.size == 4096
    assert row.event_id == f"{entry.pnfsid}@{entry.mtime}"
    # The channel's disconnect timeout was set through the channel API; the token only in headers.
    patches = [r for r in dcache_server.requests if r[0] == "PATCH"]
    assert patches, "the channel timeout was never set"
    assert all(TOKEN not in r[1] for r in dcache_server.requests)
    assert all(r[2].get("Authorization") == f"Bearer {TOKEN}" for r in dcache_server.requests)


def test_recursive_watch_follows_new_subdirectories_and_catches_early_files(
    context: Context, publish: Publish, dcache_server: FakeDcache
) -> None:
    dcache_server.mkdir("/data/raw/old")
    publish("fn", [{"source": "dcache", "path": "/data/raw", "recursive": True}])
    with running(context, dcache_server):
        assert dcache_server.watched() >= {"/data/raw", "/data/raw/old"}
        dcache_server.upload("/data/raw/old/a.h5")
        with dcache_server.lock:  # a file lands in a new directory before the source can watch it
            dcache_server.mkdir("/data/raw/run7")
            dcache_server.upload("/data/raw/run7/early.h5")
        wait_for(lambda: "/data/raw/run7" in dcache_server.watched(), what="the new directory watch")
        dcache_server.upload("/data/raw/run7/late.h5")
        wait_for(lambda: len(events(context)) == 3, what="three events")
    assert events(context) == ["/data/raw/old/a.h5", "/data/raw/run7/early.h5", "/data/raw/run7/late.h5"]


def test_move_into_the_directory_and_delete(
    context: Context, publish: Publish, dcache_server: FakeDcache
) -> None:
    dcache_server.mkdir("/data/in")
    dcache_server.mkdir("/staging")
    publish("fn", [{"source": "dcache", "path": "/data/in", "events": ["created", "deleted"]}])
    with running(context, dcache_server):
        dcache_server.upload("/staging/x.dat")
        dcache_server.move("/staging/x.dat", "/data/in/x.dat")
        wait_for(lambda: events(context), what="created by move")
        dcache_server.delete("/data/in/x.dat")
        wait_for(lambda: events(context, "deleted"), what="deleted")
    assert events(context) == ["/data/in/x.dat"]
    assert events(context, "deleted") == ["/data/in/x.dat"]


def test_resumes_with_last_event_id_after_a_dropped_connection(
    context: Context, publish: Publish, dcache_server: FakeDcache
) -> None:
    dcache_server.mkdir("/data/in")
    publish("fn", [{"source": "dcache", "path": "/data/in"}])
    with running(context, dcache_server):
        dcache_server.upload("/data/in/1.dat")
        wait_for(lambda: events(context), what="first event")
        with dcache_server.lock:
            dcache_server.drop_connections()
            dcache_server.upload("/data/in/2.dat")  # lands while the client is away
        wait_for(lambda: len(events(context)) == 2, what="the event sent during the gap")
    resumed = [r for r in dcache_server.requests if "last-event-id" in {k.lower() for k in r[2]}]
    assert resumed, "the reconnect did not send Last-Event-ID"
    assert events(context) == ["/data/in/1.dat", "/data/in/2.dat"]


def test_restart_reuses_the_channel_and_event_loss_is_reconciled(
    context: Context, publish: Publish, dcache_server: FakeDcache
) -> None:
    dcache_server.backlog_size = 4
    dcache_server.mkdir("/data/in")
    publish("fn", [{"source": "dcache", "path": "/data/in"}])
    with running(context, dcache_server):
        dcache_server.upload("/data/in/first.dat")
        wait_for(lambda: events(context), what="first event")
    with context.sessions() as session:
        channel = load_cursor(session, "dcache").channel_url  # type: ignore[union-attr]
    for i in range(10):  # far more than the backlog holds while nobody listens
        dcache_server.upload(f"/data/in/gap{i}.dat")
    before = len(dcache_server.channels)
    with running(context, dcache_server):
        wait_for(lambda: len(events(context)) == 11, what="every file after EVENT_LOSS")
    assert len(dcache_server.channels) == before == 1
    with context.sessions() as session:
        assert load_cursor(session, "dcache").channel_url == channel  # type: ignore[union-attr]


def test_expired_channel_is_replaced_and_reconciled(
    context: Context, publish: Publish, dcache_server: FakeDcache
) -> None:
    dcache_server.mkdir("/data/in")
    publish("fn", [{"source": "dcache", "path": "/data/in"}])
    with running(context, dcache_server):
        pass
    dcache_server.channels.clear()  # garbage-collected while we were away
    dcache_server.upload("/data/in/while-away.dat")
    with running(context, dcache_server):
        wait_for(lambda: events(context), what="the file from before the new channel")
    assert events(context) == ["/data/in/while-away.dat"]


def test_competing_client_is_survived_without_loss(
    context: Context, publish: Publish, dcache_server: FakeDcache
) -> None:
    dcache_server.mkdir("/data/in")
    publish("fn", [{"source": "dcache", "path": "/data/in"}])
    with running(context, dcache_server, competing_backoff_s=0.5) as source:
        channel = source.channel or ""
        thief = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        with thief.stream("GET", channel, headers={"Accept": "text/event-stream"}) as stolen:
            assert stolen.status_code == 200
            dcache_server.upload("/data/in/stolen.dat")  # goes to the other consumer
            for line in stolen.iter_lines():
                if "IN_CLOSE_WRITE" in line:
                    break
        thief.close()
        wait_for(lambda: events(context), what="the file the competing client consumed", timeout=15)
    assert events(context) == ["/data/in/stolen.dat"]


def test_overflow_and_bad_input_are_counted_and_never_stop_the_stream(
    context: Context, publish: Publish, dcache_server: FakeDcache
) -> None:
    dcache_server.mkdir("/data/in")
    publish("fn", [{"source": "dcache", "path": "/data/in"}])
    malformed, unknown = rejected("malformed"), rejected("unknown_event_type")
    with running(context, dcache_server):
        dcache_server.send_raw("event: inotify\nid: 999\ndata: {not json\n\n")
        dcache_server.send_raw("this line has no field\n\n")
        dcache_server.send_raw('event: metronome\ndata: {"event":{}}\n\n')
        dcache_server.send_raw('event: SYSTEM\ndata: {"type":"SOMETHING_NEW"}\n\n')
        dcache_server.send_raw(
            'event: inotify\nid: 1000\ndata: {"event":{"name":"x","mask":["IN_CLOSE_WRITE"]},"subscription":"https://elsewhere/s/1"}\n\n'
        )
        with dcache_server.lock:  # a file whose events were dropped by dCache's queue
            from tests.fakes.dcache_server import Entry

            dcache_server.namespace["/data/in/silent.dat"] = Entry("REGULAR", size=3)
        dcache_server.overflow("/data/in")
        dcache_server.upload("/data/in/after.dat")
        wait_for(lambda: len(events(context)) == 2, what="events after the bad input")
    assert events(context) == ["/data/in/after.dat", "/data/in/silent.dat"]
    assert rejected("malformed") - malformed >= 1
    assert rejected("unknown_event_type") - unknown >= 2
    assert rejected("unknown_subscription") >= 1


def test_fake_rejects_what_dcache_rejects(dcache_server: FakeDcache) -> None:
    anonymous = DcacheClient(dcache_server.url, httpx.Auth())
    with pytest.raises(DcacheError, match="anonymous access not allowed"):
        anonymous.create_channel("x")
    client = DcacheClient(dcache_server.url, BearerAuth(TOKEN))
    channel = client.create_channel("t")
    with pytest.raises(DcacheError, match="Bad selector"):
        client.subscribe(channel, "relative/path", ["IN_CLOSE_WRITE"])
    with pytest.raises(DcacheError, match="Bad selector"):
        client.subscribe(channel, "/", ["IN_NOT_A_FLAG"])
    with pytest.raises(DcacheError, match="Not found"):
        client.subscribe(channel, "/missing", ["IN_CLOSE_WRITE"])
    first = client.subscribe(channel, "/", ["IN_CLOSE_WRITE"])
    assert client.subscribe(channel, "/", ["IN_CLOSE_WRITE"]) == first  # 303 to the existing one
    with pytest.raises(DcacheError, match="400"):
        client.set_channel_timeout(channel, 0)
    for i in range(127):
        client.create_channel(f"c{i}")
    with pytest.raises(DcacheError, match="too many event channels"):
        client.create_channel("one-too-many")


def test_credentials_from_files_and_never_shown(tmp_path: Path, dcache_server: FakeDcache) -> None:
    (tmp_path / "macaroon").write_text(MACAROON + "\n")
    (tmp_path / "pw").write_text(PASSWORD)
    for settings in (
        DcacheStorageSettings(url=dcache_server.url, macaroon_file=str(tmp_path / "macaroon")),
        DcacheStorageSettings(url=dcache_server.url, username="alice", password_file=str(tmp_path / "pw")),
    ):
        auth = auth_from_settings(settings)
        assert MACAROON not in repr(auth) and PASSWORD not in repr(auth)
        client = DcacheClient(dcache_server.url, auth)
        assert client.create_channel("files").startswith(dcache_server.url)
    with pytest.raises(ConfigError, match="no credentials"):
        auth_from_settings(DcacheStorageSettings(url=dcache_server.url))
