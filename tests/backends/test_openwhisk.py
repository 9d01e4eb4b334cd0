"""The OpenWhisk backend against the fake controller, whose actions really run in podman."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from publisher.backends.errors import BackendUnavailable
from publisher.backends.openwhisk import OpenWhiskBackend
from publisher.backends.openwhisk_entities import annotation
from publisher.core.context import Context
from publisher.core.types import ImageRef
from publisher.errors import FaaspubError
from publisher.manifest.model import StorageTrigger
from tests.backends.conftest import make_context
from tests.backends.images import make_release
from tests.fakes.openwhisk_server import OpenWhiskServer

pytestmark = pytest.mark.containers

SLOW = """
import time

def main(p):
    time.sleep(float(p.get('sleep', 0)))
    return {'slept': p.get('sleep', 0)}
"""
ENV = """
import os

def main(params):
    print("token length", len(os.environ.get("API_TOKEN", "")))
    return {"level": os.environ.get("LEVEL"), "token": os.environ.get("API_TOKEN"), "params": sorted(params)}
"""


def ow_context(tmp_path: Path, server: OpenWhiskServer, **extra: object) -> Context:
    tmp_path.mkdir(parents=True, exist_ok=True)
    auth = tmp_path / "ow-auth"
    auth.write_text(server.auth + "\n")
    return make_context(
        tmp_path, kind="openwhisk", openwhisk={"api_host": server.url, "auth_file": str(auth), **extra}
    )


@pytest.fixture()
def ow(
    tmp_path: Path, openwhisk_server: OpenWhiskServer
) -> Iterator[tuple[OpenWhiskServer, OpenWhiskBackend]]:
    context = ow_context(tmp_path, openwhisk_server)
    backend = context.backend
    assert isinstance(backend, OpenWhiskBackend)
    backend.client.backoff = 0.01
    yield openwhisk_server, backend
    context.engine.dispose()


def test_deploy_creates_versioned_action_and_alias_then_invoke_runs_the_code(
    ow: tuple[OpenWhiskServer, OpenWhiskBackend], function_image: Callable[..., ImageRef], tmp_path: Path
) -> None:
    server, backend = ow
    secret = "tok-very-secret-4711"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "API_TOKEN").write_text(secret)
    image = function_image("envy", "1.2.0", ENV)
    release = make_release(
        "envy",
        "1.2.0",
        image,
        namespace="xfel/spb",
        description="demo",
        env={"LEVEL": "info"},
        secrets=["API_TOKEN"],
        limits={"memory": 256, "timeout": "30s"},
    )
    backend.deploy(release)

    actions = server.controller.actions
    assert set(actions) == {"xfel--spb/envy@1.2.0", "xfel--spb/envy"}
    versioned = actions["xfel--spb/envy@1.2.0"]
    assert versioned["exec"] == {"kind": "blackbox", "image": image.pinned, "binary": False}
    assert ":" in image.pinned.split("@")[0].rsplit("/", 1)[1], "the image carries its unique tag"
    assert versioned["limits"] == {"memory": 256, "timeout": 30000, "logs": 10, "concurrency": 1}
    assert annotation(versioned, "faaspub-digest") == image.digest
    assert annotation(versioned, "faaspub-managed") == {
        "project": "7",
        "namespace": "xfel/spb",
        "function": "envy",
    }
    assert annotation(versioned, "description") == "demo"
    assert annotation(versioned, "faaspub-commit").startswith("0123456789")
    assert annotation(versioned, "exec") == "blackbox"
    assert annotation(actions["xfel--spb/envy"], "faaspub-alias-of") == "1.2.0"
    assert all(secret not in str(a) for e in actions.values() for a in e["annotations"])
    # The version's identity reaches the run as environment (init parameters), as on the local backend.
    params = {p["key"]: p for p in versioned["parameters"]}
    assert params["FAASPUB_FUNCTION_DIGEST"] == {
        "key": "FAASPUB_FUNCTION_DIGEST",
        "value": image.digest,
        "init": True,
    }
    assert params["FAASPUB_FUNCTION_VERSION"]["value"] == "1.2.0"
    assert params["FAASPUB_FUNCTION_IMAGE"]["value"] == image.pinned

    act = backend.invoke("xfel/spb", "envy", {"x": 1})
    assert act.status == "success", act
    assert act.result == {"level": "info", "token": secret, "params": ["x"]}
    assert act.version == "1.2.0" and act.digest == image.digest
    assert any("stdout: token length 20" in line for line in act.logs), act.logs
    # OpenWhisk pulled by tag: the digest was dropped from the reference
    assert server.controller.runner is not None
    assert server.controller.runner.pulled == [image.tagged]

    listed = backend.activations("xfel/spb", "envy")
    assert [a.id for a in listed] == [act.id]
    assert backend.activation("xfel/spb", act.id).result == act.result
    [info] = backend.functions("xfel/spb")
    assert info.alias == "1.2.0" and info.versions == ["1.2.0"]


def test_redeploy_same_version_is_idempotent_and_other_digest_refused(
    ow: tuple[OpenWhiskServer, OpenWhiskBackend],
    function_image: Callable[..., ImageRef],
    tmp_path: Path,
    openwhisk_server: OpenWhiskServer,
) -> None:
    server, backend = ow
    one = function_image("imm", "1.0.0", "def main(p):\n    return {'v': 1}\n")
    other = function_image("imm", "1.0.0", "def main(p):\n    return {'v': 'other'}\n")
    backend.deploy(make_release("imm", "1.0.0", one))
    version_before = server.controller.actions["grp/imm@1.0.0"]["version"]
    backend.deploy(make_release("imm", "1.0.0", one))
    assert server.controller.actions["grp/imm@1.0.0"]["version"] == version_before, (
        "versioned action rewritten"
    )
    with pytest.raises(FaaspubError, match="already published"):
        backend.deploy(make_release("imm", "1.0.0", other))

    # A second installation (empty catalogue) sharing the platform is refused by the action's annotation.
    fresh = ow_context(tmp_path / "second", openwhisk_server)
    with pytest.raises(FaaspubError, match="already published"):
        fresh.backend.deploy(make_release("imm", "1.0.0", other))


def test_rollback_moves_the_alias_and_names_existing_versions(
    ow: tuple[OpenWhiskServer, OpenWhiskBackend], function_image: Callable[..., ImageRef]
) -> None:
    server, backend = ow
    for v in ("1.0.0", "1.1.0"):
        backend.deploy(
            make_release("rb", v, function_image("rb", v, f"def main(p):\n    return {{'v': '{v}'}}\n"))
        )
    assert annotation(server.controller.actions["grp/rb"], "faaspub-alias-of") == "1.1.0"
    backend.rollback("grp", "rb", "1.0.0")
    alias = server.controller.actions["grp/rb"]
    assert annotation(alias, "faaspub-alias-of") == "1.0.0"
    assert alias["exec"]["image"] == server.controller.actions["grp/rb@1.0.0"]["exec"]["image"]
    assert backend.invoke("grp", "rb", {}).result == {"v": "1.0.0"}
    with pytest.raises(FaaspubError) as exc:
        backend.rollback("grp", "rb", "3.0.0")
    assert exc.value.message == "function rb has no version 3.0.0"
    assert exc.value.hint == "versions that exist: 1.0.0, 1.1.0"


def test_limits_are_checked_before_any_request(
    tmp_path: Path, openwhisk_server: OpenWhiskServer, function_image: Callable[..., ImageRef]
) -> None:
    context = ow_context(tmp_path, openwhisk_server, max_memory_mb=256)
    image = function_image("hello", "1.0.0")
    with pytest.raises(FaaspubError) as exc:
        context.backend.deploy(make_release("big", "1.0.0", image, limits={"memory": 512}))
    assert (
        "limits.memory 512 MB exceeds the OpenWhisk platform's allowed threshold of 256 MB"
        in exc.value.message
    )
    assert "backend.openwhisk.max_memory_mb" in (exc.value.hint or "")
    with pytest.raises(FaaspubError, match=r"limits\.concurrency 2 exceeds"):
        context.backend.deploy(make_release("big", "1.0.0", image, limits={"concurrency": 2}))
    assert openwhisk_server.controller.requests == []


def test_controller_rejects_limits_and_kinds_with_its_messages(
    ow: tuple[OpenWhiskServer, OpenWhiskBackend],
) -> None:
    _, backend = ow
    client = backend.client
    with pytest.raises(FaaspubError) as exc:
        client.request(
            "PUT",
            client.path("actions", "x"),
            entity="action x",
            body={"exec": {"kind": "blackbox", "image": "i:1"}, "limits": {"memory": 1024}},
        )
    assert "memory 1024 MB exceeds allowed threshold of 512 MB (HTTP 400, transaction " in exc.value.message
    with pytest.raises(FaaspubError, match="The specified runtime 'python:3' is not supported"):
        client.request(
            "PUT",
            client.path("actions", "x"),
            entity="action x",
            body={"exec": {"kind": "python:3", "code": "x"}},
        )
    client.request(
        "PUT",
        client.path("actions", "x"),
        entity="action x",
        body={"exec": {"kind": "blackbox", "image": "i:1"}},
    )
    with pytest.raises(FaaspubError, match="action x: resource already exists \\(HTTP 409"):
        client.request(
            "PUT",
            client.path("actions", "x"),
            entity="action x",
            body={"exec": {"kind": "blackbox", "image": "i:1"}},
        )


def test_storage_binding_trigger_fire_runs_the_alias(
    ow: tuple[OpenWhiskServer, OpenWhiskBackend], function_image: Callable[..., ImageRef]
) -> None:
    server, backend = ow
    release = make_release("hello", "1.0.0", function_image("hello", "1.0.0"))
    backend.deploy(release)
    with pytest.raises(FaaspubError, match="has no storage trigger grp--hello--storage"):
        backend.fire("grp", "hello", {"name": "nobody"})
    backend.bind(release, [StorageTrigger(source="dcache", path="/pnfs/data", match="*.h5")])
    assert set(server.controller.triggers) == {"grp--hello--storage"}
    rule = server.controller.rules["grp--hello--storage"]
    assert rule["action"] == {"path": "guest/grp", "name": "hello"} and rule["status"] == "active"

    trigger_id = backend.fire("grp", "hello", {"name": "event"})
    assert trigger_id is not None
    trigger = server.controller.wait_activation(trigger_id, 5)
    assert trigger is not None
    import json

    [entry] = [json.loads(line) for line in trigger["logs"]]
    assert entry["success"] and entry["rule"] == "guest/grp--hello--storage"
    action = server.controller.wait_activation(entry["activationId"], 60)
    assert action is not None and action["cause"] == trigger_id
    assert action["response"]["result"]["greeting"] == "hello event"

    backend.unbind("grp", "hello")
    assert server.controller.triggers == {} and server.controller.rules == {}
    assert backend.functions("grp")[0].triggers == []


def test_prune_deletes_actions_triggers_of_undeclared_functions(
    ow: tuple[OpenWhiskServer, OpenWhiskBackend], function_image: Callable[..., ImageRef]
) -> None:
    server, backend = ow
    image = function_image("hello", "1.0.0")
    for name, project in (("keep", 5), ("gone", 5), ("foreign", 6)):
        release = make_release(name, "1.0.0", image, project=project)
        backend.deploy(release)
        backend.bind(release, [StorageTrigger(source="s3", path="bucket/in")])
    assert backend.prune("grp", "5", keep=["keep"]) == ["gone"]
    assert sorted(server.controller.actions) == [
        "grp/foreign",
        "grp/foreign@1.0.0",
        "grp/keep",
        "grp/keep@1.0.0",
    ]
    assert sorted(server.controller.triggers) == ["grp--foreign--storage", "grp--keep--storage"]
    assert [f.name for f in backend.functions("grp")] == ["foreign", "keep"]


def test_blocking_invoke_falls_back_to_polling_on_202(
    ow: tuple[OpenWhiskServer, OpenWhiskBackend], function_image: Callable[..., ImageRef]
) -> None:
    server, backend = ow
    backend.deploy(make_release("slow", "1.0.0", function_image("slow", "1.0.0", SLOW)))
    backend.invoke("grp", "slow", {})  # start the container
    server.controller.max_blocking_wait_ms = 100
    act = backend.invoke("grp", "slow", {"sleep": 1})
    assert act.status == "success" and act.result == {"slept": 1}
    assert act.duration_ms >= 900
    pending = backend.invoke("grp", "slow", {"sleep": 0}, blocking=False)
    assert pending.status == "pending" and pending.version == "1.0.0"


def test_timeout_and_application_error_statuses(
    ow: tuple[OpenWhiskServer, OpenWhiskBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = ow
    backend.deploy(
        make_release("slow", "1.0.0", function_image("slow", "1.0.0", SLOW), limits={"timeout": "1s"})
    )
    act = backend.invoke("grp", "slow", {"sleep": 3})
    assert act.status == "timeout"
    code = "def main(p):\n    raise RuntimeError('nope')\n"
    backend.deploy(make_release("bad", "1.0.0", function_image("bad", "1.0.0", code)))
    failed = backend.invoke("grp", "bad", {})
    assert failed.status == "application_error" and failed.result == {"error": "RuntimeError: nope"}


def test_retries_429_and_503_then_succeeds(
    ow: tuple[OpenWhiskServer, OpenWhiskBackend], function_image: Callable[..., ImageRef]
) -> None:
    server, backend = ow
    server.controller.fail_next("/namespaces/_/packages", 429, count=2)
    server.controller.fail_next("/namespaces/_/actions/grp/hello@", 503, count=1)
    backend.deploy(make_release("hello", "1.0.0", function_image("hello", "1.0.0")))
    assert "grp/hello" in server.controller.actions
    server.controller.fail_next("/namespaces/_/packages", 503, count=10)
    with pytest.raises(BackendUnavailable, match="System is overloaded"):
        backend.deploy(make_release("hello", "1.0.1", function_image("hello", "1.0.0")))


def test_platform_down_leaves_the_release_resumable(
    tmp_path: Path, function_image: Callable[..., ImageRef]
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    (tmp_path / "auth").write_text("user:key")
    context = make_context(
        tmp_path,
        kind="openwhisk",
        openwhisk={"api_host": f"http://127.0.0.1:{port}", "auth_file": str(tmp_path / "auth")},
    )
    backend = context.backend
    assert isinstance(backend, OpenWhiskBackend)
    backend.client.backoff = 0.01
    with pytest.raises(BackendUnavailable) as exc:
        backend.deploy(make_release("hello", "1.0.0", function_image("hello", "1.0.0")))
    assert "is not reachable" in exc.value.message and "resumed" in exc.value.message
    assert exc.value.resumable
    assert backend.functions("grp") == [], "nothing recorded as live when the platform was down"


def test_wrong_credentials_and_tag_moved(
    tmp_path: Path, openwhisk_server: OpenWhiskServer, function_image: Callable[..., ImageRef]
) -> None:
    (tmp_path / "auth").write_text("someone:wrong-key")
    context = make_context(
        tmp_path,
        kind="openwhisk",
        openwhisk={"api_host": openwhisk_server.url, "auth_file": str(tmp_path / "auth")},
    )
    image = function_image("hello", "1.0.0")
    with pytest.raises(FaaspubError) as exc:
        context.backend.deploy(make_release("hello", "1.0.0", image))
    assert "The supplied authentication is invalid (HTTP 401" in exc.value.message
    backend = context.backend
    assert isinstance(backend, OpenWhiskBackend)
    assert "wrong-key" not in str(exc.value) + repr(backend.client)

    other = function_image("hello", "1.0.0", "def main(p):\n    return {}\n")
    moved = ImageRef(image.repository, image.tag, other.digest)  # the tag does not hold this digest
    ok = ow_context(tmp_path / "x", openwhisk_server)
    with pytest.raises(FaaspubError, match="now points to"):
        ok.backend.deploy(make_release("hello", "1.0.0", moved))


def test_undeploy_version_and_whole_function(
    ow: tuple[OpenWhiskServer, OpenWhiskBackend], function_image: Callable[..., ImageRef]
) -> None:
    server, backend = ow
    for v in ("1.0.0", "2.0.0"):
        backend.deploy(make_release("un", v, function_image("hello", "1.0.0")))
    with pytest.raises(FaaspubError, match="is what un runs now"):
        backend.undeploy("grp", "un", "2.0.0")
    backend.undeploy("grp", "un", "1.0.0")
    assert sorted(server.controller.actions) == ["grp/un", "grp/un@2.0.0"]
    backend.undeploy("grp", "un")
    assert server.controller.actions == {}
    assert backend.functions("grp") == []
    time.sleep(0)
