"""The local backend with real containers (podman's Docker-compatible socket)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from publisher.backends.local import LocalBackend
from publisher.core.context import Context
from publisher.core.types import ImageRef
from publisher.errors import FaaspubError
from tests.backends.conftest import make_context
from tests.backends.images import make_release

pytestmark = pytest.mark.containers

SLOW = """
import time

def main(params):
    time.sleep(float(params.get("sleep", 0)))
    return {"slept": params.get("sleep", 0)}
"""

CRASH = """
import os

def main(params):
    if params.get("crash"):
        print("about to die", flush=True)
        os._exit(3)
    return {"ok": True}
"""

SECRET = """
import os

def main(params):
    token = os.environ.get("API_TOKEN", "")
    print("token is", token)
    return {"has_token": bool(token), "length": len(token), "level": os.environ.get("LEVEL")}
"""


@pytest.fixture()
def local(tmp_path: Path, podman_socket: str) -> Iterator[tuple[Context, LocalBackend]]:
    context = make_context(tmp_path, kind="local", local={"engine": "docker", "docker_host": podman_socket})
    backend = context.backend
    assert isinstance(backend, LocalBackend)
    try:
        yield context, backend
    finally:
        backend.close()
        context.engine.dispose()


def test_deploy_invoke_warm_reuse_and_logs(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    release = make_release("hello", "1.0.0", function_image("hello", "1.0.0"))
    backend.deploy(release)

    first = backend.invoke("grp", "hello", {"name": "ada"})
    assert first.status == "success", first
    assert first.result["greeting"] == "hello ada"
    assert first.result["uid"] == 1000
    assert first.version == "1.0.0" and first.digest == release.image.digest
    # The run knows which published version it is (faaspub_runtime.identity), and accounting its memory.
    assert first.result["identity"] == {
        "FAASPUB_FUNCTION_NAMESPACE": "grp",
        "FAASPUB_FUNCTION_NAME": "hello",
        "FAASPUB_FUNCTION_VERSION": "1.0.0",
        "FAASPUB_FUNCTION_DIGEST": release.image.digest,
        "FAASPUB_FUNCTION_IMAGE": release.image.pinned,
    }
    assert first.memory_mb == 256 and first.bytes_read is None
    assert any("stdout: hello from ada" in line for line in first.logs), first.logs
    assert any("stderr: to stderr" in line for line in first.logs), first.logs

    second = backend.invoke("grp", "hello", {"name": "bob"})
    assert second.status == "success"
    assert second.result["pid"] == first.result["pid"], "the warm container was not reused"
    assert [line for line in second.logs if "hello from" in line] == [
        line for line in second.logs if "hello from bob" in line
    ], "logs of the first activation leaked into the second"
    assert backend.warm_instances("grp", "hello") == 1

    stored = backend.activation("grp", second.id)
    assert stored.result == second.result and stored.logs == second.logs
    listed = backend.activations("grp", "hello")
    assert [a.id for a in listed] == [second.id, first.id]


ISOLATION = """
import os

def main(params):
    try:
        open("/action/x", "w").write("x")
        root_writable = True
    except OSError:
        root_writable = False
    open("/tmp/scratch", "w").write("ok")
    status = open("/proc/self/status").read()
    caps = [line.split()[1] for line in status.splitlines() if line.startswith("CapEff")]
    nnp = [line.split()[1] for line in status.splitlines() if line.startswith("NoNewPrivs")]
    return {"root_writable": root_writable, "cap_eff": caps[0], "no_new_privs": nnp[0], "uid": os.getuid()}
"""


def test_container_is_unprivileged(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    backend.deploy(make_release("iso", "1.0.0", function_image("iso", "1.0.0", ISOLATION)))
    result = backend.invoke("grp", "iso", {}).result
    assert result == {"root_writable": False, "cap_eff": "0000000000000000", "no_new_privs": "1", "uid": 1000}


def test_concurrency_limit_one_runs_in_parallel_instances(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    backend.deploy(make_release("slow", "1.0.0", function_image("slow", "1.0.0", SLOW)))
    backend.invoke("grp", "slow", {"sleep": 0})  # warm one instance
    results = []

    def call() -> None:
        results.append(backend.invoke("grp", "slow", {"sleep": 1.0}))

    threads = [threading.Thread(target=call) for _ in range(3)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert all(a.status == "success" for a in results), results
    # concurrency 1 per instance: three parallel calls need three instances, not 3 s in a row
    assert backend.warm_instances("grp", "slow") == 3
    assert elapsed < 2.9, elapsed


def test_concurrency_above_one_shares_an_instance(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    image = function_image("slowc", "1.0.0", SLOW)
    backend.deploy(make_release("slowc", "1.0.0", image, limits={"concurrency": 4}))
    backend.invoke("grp", "slowc", {"sleep": 0})
    threads = [
        threading.Thread(target=backend.invoke, args=("grp", "slowc", {"sleep": 0.5})) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backend.warm_instances("grp", "slowc") == 1


def test_timeout_replaces_the_container(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    image = function_image("sleepy", "1.0.0", SLOW)
    backend.deploy(make_release("sleepy", "1.0.0", image, limits={"timeout": "1s"}))
    slow = backend.invoke("grp", "sleepy", {"sleep": 5})
    assert slow.status == "timeout"
    assert slow.result == {"error": "The action exceeded its time limits of 1000 milliseconds."}
    assert slow.duration_ms < 4000
    assert backend.activation("grp", slow.id).status == "timeout"
    after = backend.invoke("grp", "sleepy", {"sleep": 0})
    assert after.status == "success" and after.result == {"slept": 0}


def test_crash_of_the_function_process(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    backend.deploy(make_release("crashy", "1.0.0", function_image("crashy", "1.0.0", CRASH)))
    crashed = backend.invoke("grp", "crashy", {"crash": True})
    assert crashed.status == "developer_error"
    assert "exited unexpectedly" in crashed.result["error"]
    assert any("about to die" in line for line in crashed.logs), crashed.logs
    assert backend.invoke("grp", "crashy", {}).result == {"ok": True}


def test_application_error_is_recorded(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    code = "def main(params):\n    raise ValueError('bad input: ' + params['x'])\n"
    backend.deploy(make_release("raiser", "1.0.0", function_image("raiser", "1.0.0", code)))
    act = backend.invoke("grp", "raiser", {"x": "42"})
    assert act.status == "application_error"
    assert act.result == {"error": "ValueError: bad input: 42"}
    assert any("Traceback" in line for line in act.logs)


def test_versions_rollback_and_immutability(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    v1 = function_image("multi", "1.0.0", "def main(p):\n    return {'v': 1}\n")
    v2 = function_image("multi", "2.0.0", "def main(p):\n    return {'v': 2}\n")
    backend.deploy(make_release("multi", "1.0.0", v1))
    backend.deploy(make_release("multi", "2.0.0", v2))
    assert backend.invoke("grp", "multi", {}).result == {"v": 2}
    assert backend.invoke("grp", "multi", {}, version="1.0.0").result == {"v": 1}

    backend.rollback("grp", "multi", "1.0.0")
    alias = backend.invoke("grp", "multi", {})
    assert alias.result == {"v": 1} and alias.version == "1.0.0"

    with pytest.raises(FaaspubError) as unknown:
        backend.rollback("grp", "multi", "9.9.9")
    assert "no version 9.9.9" in unknown.value.message
    assert "1.0.0, 2.0.0" in (unknown.value.hint or "")

    with pytest.raises(FaaspubError) as immutable:
        backend.deploy(make_release("multi", "1.0.0", v2))
    assert "already published" in immutable.value.message
    assert backend.invoke("grp", "multi", {}).result == {"v": 1}
    # the same release again is fine (a resumed pipeline repeats its deploy)
    backend.deploy(make_release("multi", "2.0.0", v2))


def test_prune_removes_what_the_project_no_longer_declares(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    image = function_image("hello", "1.0.0")
    for name in ("keep-me", "drop-me"):
        backend.deploy(make_release(name, "1.0.0", image, project=11))
    backend.deploy(make_release("other-project", "1.0.0", image, project=12))
    assert backend.invoke("grp", "drop-me", {}).status == "success"
    assert backend.warm_instances("grp", "drop-me") == 1

    assert backend.prune("grp", "11", keep=["keep-me"]) == ["drop-me"]
    assert backend.warm_instances("grp", "drop-me") == 0
    names = [f.name for f in backend.functions("grp")]
    assert names == ["keep-me", "other-project"]
    with pytest.raises(FaaspubError, match="drop-me does not exist"):
        backend.invoke("grp", "drop-me", {})


def test_secrets_reach_the_function_but_not_the_logs(
    local: tuple[Context, LocalBackend],
    function_image: Callable[..., ImageRef],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    context, backend = local
    secret = "tok-" + "s3cr3t-value-1234"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "API_TOKEN").write_text(secret + "\n")
    image = function_image("secretive", "1.0.0", SECRET)
    backend.deploy(make_release("secretive", "1.0.0", image, secrets=["API_TOKEN"], env={"LEVEL": "debug"}))
    act = backend.invoke("grp", "secretive", {})
    assert act.result == {"has_token": True, "length": len(secret), "level": "debug"}
    assert any("token is ***" in line for line in act.logs), act.logs
    assert secret not in repr(backend.activation("grp", act.id))
    assert secret not in caplog.text
    from publisher.db.models import Version

    with context.sessions() as session:
        assert all(secret not in repr(v.manifest) for v in session.query(Version).all())


def test_missing_secret_is_named(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    image = function_image("secretive", "1.0.0", SECRET)
    backend.deploy(make_release("needs-secret", "1.0.0", image, secrets=["MISSING_ONE"]))
    with pytest.raises(FaaspubError, match="secret MISSING_ONE has no value"):
        backend.invoke("grp", "needs-secret", {})


def test_non_blocking_invoke_and_fire(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    backend.deploy(make_release("hello", "1.0.0", function_image("hello", "1.0.0")))
    pending = backend.invoke("grp", "hello", {"name": "later"}, blocking=False)
    assert pending.status == "pending"
    fired = backend.fire("grp", "hello", {"name": "event"})
    assert fired is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = [backend.activation("grp", i) for i in (pending.id, fired)]
        if all(a.status != "pending" for a in done):
            break
        time.sleep(0.05)
    assert [a.status for a in done] == ["success", "success"]
    assert done[0].result["greeting"] == "hello later"
    assert done[1].cause == "storage"


def test_idle_instances_are_stopped(
    tmp_path: Path, podman_socket: str, function_image: Callable[..., ImageRef]
) -> None:
    context = make_context(
        tmp_path,
        kind="local",
        local={"engine": "docker", "docker_host": podman_socket, "idle_timeout_s": 0.3},
    )
    backend = context.backend
    assert isinstance(backend, LocalBackend)
    try:
        backend.deploy(make_release("hello", "1.0.0", function_image("hello", "1.0.0")))
        assert backend.invoke("grp", "hello", {}).status == "success"
        deadline = time.monotonic() + 10
        while backend.warm_instances("grp", "hello") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.warm_instances("grp", "hello") == 0
        assert backend.invoke("grp", "hello", {}).status == "success"
    finally:
        backend.close()


def test_bind_records_triggers(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    from publisher.manifest.model import StorageTrigger

    release = make_release("hello", "1.0.0", function_image("hello", "1.0.0"))
    backend.deploy(release)
    trigger = StorageTrigger(source="local", path="/data/in", match="*.h5")
    backend.bind(release, [trigger])
    [info] = backend.functions("grp")
    assert info.triggers == [
        {
            "kind": "storage",
            "source": "local",
            "path": "/data/in",
            "recursive": False,
            "events": ["created"],
            "match": "*.h5",
            "public": False,
        }
    ]
    backend.unbind("grp", "hello")
    assert backend.functions("grp")[0].triggers == []


def test_unknown_function_and_bad_payload(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    with pytest.raises(FaaspubError, match="function nope does not exist in namespace grp"):
        backend.invoke("grp", "nope", {})
    backend.deploy(make_release("hello", "1.0.0", function_image("hello", "1.0.0")))
    with pytest.raises(FaaspubError, match="the limit is 1048576"):
        backend.invoke("grp", "hello", {"blob": "x" * (1024 * 1024)})
    with pytest.raises(FaaspubError, match=r"has no version 0\.0\.1"):
        backend.invoke("grp", "hello", {}, version="0.0.1")


def test_init_failure_is_a_developer_error(
    local: tuple[Context, LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    _, backend = local
    code = "raise ImportError('missing dependency h5py')\n"
    backend.deploy(make_release("broken", "1.0.0", function_image("broken", "1.0.0", code)))
    act = backend.invoke("grp", "broken", {})
    assert act.status == "developer_error"
    assert "init failed" in act.result["error"] and "missing dependency h5py" in act.result["error"]
    assert backend.warm_instances("grp", "broken") == 0
