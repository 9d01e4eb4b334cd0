"""The Zenodo client on its own: error texts, retries, link following, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from publisher.archive import ArchiveClients, NoArchive, get_archive
from publisher.archive.release import RecordArchive
from publisher.archive.zenodo import ZenodoClient, ZenodoError
from publisher.config import ArchiveSettings, DatabaseSettings, Settings
from publisher.errors import ConfigError
from tests.fakes.zenodo_server import ZenodoServer


def client_for(server: ZenodoServer, **kw: object) -> ZenodoClient:
    options: dict[str, object] = {"sleep": lambda s: None, "timeout": 5.0}
    options.update(kw)
    return ZenodoClient(server.url, server.token, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", ["rdm", "legacy"])
def test_validation_errors_of_both_shapes_name_the_field(zenodo_server: ZenodoServer, shape: str) -> None:
    zenodo_server.fake.error_shape = shape
    with pytest.raises(ZenodoError) as caught:
        client_for(zenodo_server).create({"license": "foo"})
    assert caught.value.status == 400
    assert "metadata.license: Invalid license provided: foo" in str(caught.value)


def test_server_errors_on_idempotent_calls_are_retried(zenodo_server: ZenodoServer) -> None:
    dep = client_for(zenodo_server).create({})
    zenodo_server.fake.faults.server_errors = 2
    waits: list[float] = []
    assert client_for(zenodo_server, sleep=waits.append).get(dep.id) is not None
    assert len(waits) == 2


def test_create_is_not_retried_after_a_server_error(zenodo_server: ZenodoServer) -> None:
    zenodo_server.fake.faults.server_errors = 1
    with pytest.raises(ZenodoError, match="HTTP 500"):
        client_for(zenodo_server).create({})
    assert zenodo_server.fake.deposits == {}
    assert len([s for s in zenodo_server.fake.seen if s.method == "POST"]) == 1


def test_rate_limit_gives_up_after_the_retries(zenodo_server: ZenodoServer) -> None:
    zenodo_server.fake.faults.rate_limited = 10
    zenodo_server.fake.faults.retry_after = 3
    waits: list[float] = []
    with pytest.raises(ZenodoError, match="HTTP 429") as caught:
        client_for(zenodo_server, sleep=waits.append, retries=2).drafts()
    assert waits == [3.0, 3.0]
    assert caught.value.hint and "rate" in caught.value.hint


def test_missing_bucket_link_is_a_clear_error(zenodo_server: ZenodoServer, tmp_path: Path) -> None:
    zenodo_server.fake.faults.no_bucket_link = True
    client = client_for(zenodo_server)
    dep = client.create({})
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(ZenodoError, match="no bucket link"):
        client.upload(dep, "f", tmp_path / "f")


def test_unreachable_server_names_the_call_not_the_token() -> None:
    client = ZenodoClient("http://127.0.0.1:9/api", "tok-123456", retries=1, sleep=lambda s: None, timeout=1)
    with pytest.raises(ZenodoError) as caught:
        client.get(1)
    assert "GET /api/deposit/depositions/1" in str(caught.value)
    assert "tok-123456" not in str(caught.value) and "tok-123456" not in repr(client)


def test_get_archive_picks_the_configured_kind(tmp_path: Path) -> None:
    assert isinstance(get_archive(Settings()), NoArchive)
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'db.sqlite'}"),
        archive=ArchiveSettings(kind="zenodo", url="https://sandbox.zenodo.org/api"),
    )
    assert isinstance(get_archive(settings), RecordArchive)


def test_tokens_per_namespace_fall_back_to_the_default(tmp_path: Path) -> None:
    (tmp_path / "org").write_text("org-token\n")
    (tmp_path / "default").write_text("default-token\n")
    clients = ArchiveClients(
        ArchiveSettings(
            kind="zenodo", token_file=str(tmp_path / "default"), token_files={"fs-sc": str(tmp_path / "org")}
        )
    )
    assert clients("fs-sc").client._session.auth._token == "org-token"  # type: ignore[attr-defined]
    assert clients("other").client._session.auth._token == "default-token"  # type: ignore[attr-defined]
    assert clients("fs-sc") is clients("fs-sc")
    with pytest.raises(ConfigError, match="no archive token for namespace 'x'"):
        ArchiveClients(ArchiveSettings(kind="zenodo"))("x")


def test_context_builds_the_archive_on_its_migrated_database(tmp_path: Path) -> None:
    from publisher.core.context import Context

    context = Context(
        Settings(
            database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'db.sqlite'}"),
            archive=ArchiveSettings(kind="zenodo"),
        )
    )
    assert isinstance(context.archive, RecordArchive)
    assert isinstance(Context(Settings()).archive, NoArchive)
