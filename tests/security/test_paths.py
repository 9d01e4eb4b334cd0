"""Every path a namespace binds, replays or lists is normalised and inside its allowed prefixes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.pipeline import Pipeline
from publisher.errors import FaaspubError
from publisher.manifest.load import load_function
from publisher.triggers.store import DeliveryRow
from tests.catalogue.conftest import HELLO, Seeded, bearer, make_context, seed
from tests.fakes.dcache_fixture import TOKEN as DCACHE_TOKEN
from tests.fakes.dcache_server import FakeDcache
from webhooks.app import create_app

REPLAY = "/api/v1/functions/hello/replay"


@pytest.fixture()
def service(tmp_path: Path, dcache_server: FakeDcache) -> Iterator[tuple[Seeded, TestClient]]:
    """The catalogue with hello (namespace local, bound to /incoming) and a dCache frontend."""
    token = tmp_path / "dcache-token"
    token.write_text(DCACHE_TOKEN)
    context = make_context(tmp_path)
    context.settings.storage.dcache.url = dcache_server.url
    context.settings.storage.dcache.token_file = str(token)
    context.settings.storage.allowed_paths = {"local": ["/incoming", "/pnfs/xfel.eu/exfel/raw/SPB"]}
    seeded = seed(context)
    with TestClient(create_app(context)) as client:
        yield seeded, client
    context.engine.dispose()


def queued(seeded: Seeded) -> int:
    with seeded.context.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(DeliveryRow)) or 0)


@pytest.mark.parametrize("path", ["/../../../etc/ssh", "/incoming/../../../../etc", "../etc"])
def test_replay_cannot_leave_the_storage_root(service: tuple[Seeded, TestClient], path: str) -> None:
    seeded, client = service
    answer = client.post(REPLAY, json={"path": path}, headers=bearer(seeded.tokens["local:admin"]))
    assert answer.status_code == 400, answer.text
    assert "'..'" in answer.json()["error"]
    assert queued(seeded) == 0


def test_replay_does_not_follow_a_link_out_of_the_storage_root(
    service: tuple[Seeded, TestClient],
) -> None:
    seeded, client = service
    root = Path(seeded.context.settings.storage.local.root)
    (root / "incoming").mkdir(parents=True)
    (root / "incoming" / "etc").symlink_to("/etc")
    answer = client.post(REPLAY, json={"path": "/incoming/etc"}, headers=bearer(seeded.tokens["local:admin"]))
    assert answer.status_code == 400, answer.text
    assert "leads out of the local storage" in answer.json()["error"]
    assert queued(seeded) == 0


def test_replay_cannot_list_another_groups_dcache_folder_with_the_services_credentials(
    service: tuple[Seeded, TestClient], dcache_server: FakeDcache
) -> None:
    seeded, client = service
    dcache_server.mkdir("/pnfs/desy.de/other-group/private")
    dcache_server.upload("/pnfs/desy.de/other-group/private/run1.h5")
    dcache_server.requests.clear()
    answer = client.post(
        REPLAY,
        json={"path": "/pnfs/desy.de/other-group/private", "source": "dcache"},
        headers=bearer(seeded.tokens["local:admin"]),
    )
    assert answer.status_code == 400, answer.text
    assert "outside the paths namespace 'local' may use" in answer.json()["error"]
    assert dcache_server.requests == []  # nothing was listed
    assert queued(seeded) == 0


def test_nothing_may_be_bound_by_default_once_gitlab_serves_groups(tmp_path: Path) -> None:
    gitlab = Settings.model_validate({"gitlab": {"url": "https://gitlab.example.org", "groups": ["fs-sc"]}})
    fn = load_function(HELLO, namespace="fs-sc")  # binds /incoming
    with pytest.raises(FaaspubError, match="may bind: none"):
        Pipeline(Context(gitlab)).check_bindings(fn)
    # The embedded single namespace keeps its own storage without any configuration.
    Pipeline(Context(Settings())).check_bindings(load_function(HELLO, namespace="local"))
