"""Functions on the local backend cannot reach each other, other namespaces' data or the host.

Every test deploys real images and runs them in podman containers through the local backend, the
way ``faaspub serve`` does; the attacker is a function of its own namespace.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from publisher.backends.local import LocalBackend
from publisher.config import Settings
from publisher.core.context import Context
from publisher.core.types import ImageRef
from publisher.errors import FaaspubError
from publisher.manifest.model import StorageTrigger
from tests.backends.images import make_release
from tests.security.conftest import local_context

pytestmark = pytest.mark.containers

VICTIM = """
def main(params):
    return {"victim": True, "params": params}
"""

# Finds every listening TCP port it can see and posts an OpenWhisk /run to it, as a function that
# wants to run another namespace's warm instance would.
KNOCK = r"""
import http.client, json
from concurrent.futures import ThreadPoolExecutor

def listening():
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)

def knock(port):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("POST", "/run", json.dumps({"value": {"from": "attacker"}}),
                     {"Content-Type": "application/json"})
        answer = conn.getresponse()
        return port, answer.status, answer.read(2000).decode("utf-8", "replace")
    except Exception as exc:
        return port, None, type(exc).__name__

def main(params):
    ports = listening()
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(knock, ports))
    ran = [port for port, status, body in answers if status == 200 and '"victim"' in body]
    refused = [port for port, status, body in answers if status == 403]
    return {"ports": len(ports), "ran_victim": ran, "refused": refused}
"""

FILES = r"""
import os

def main(params):
    out = {"uid": os.getuid()}
    def attempt(name, act):
        try:
            act()
            out[name] = "ok"
        except OSError as exc:
            out[name] = exc.strerror or type(exc).__name__
    attempt("read_other_namespace", lambda: open(params["other"]).read())
    attempt("write_trigger_folder", lambda: open(params["input"] + "/planted.txt", "w").write("x"))
    attempt("write_output_folder", lambda: open(params["output"] + "/result.txt", "w").write("y"))
    attempt("read_input", lambda: open(params["input"] + "/run1.txt").read())
    return out
"""

THREADS = r"""
import threading

def main(params):
    stop, threads, error = threading.Event(), [], None
    try:
        for _ in range(int(params["n"])):
            thread = threading.Thread(target=stop.wait)
            thread.start()
            threads.append(thread)
    except RuntimeError as exc:
        error = str(exc)
    stop.set()
    for thread in threads:
        thread.join()
    return {"started": len(threads), "failure": error}
"""


@pytest.fixture()
def backend_for(tmp_path: Path, podman_socket: str) -> Iterator[Callable[..., LocalBackend]]:
    """Local backends on podman (``network`` as asked), all closed at the end."""
    made: list[tuple[Context, LocalBackend]] = []

    def make(**local: object) -> LocalBackend:
        context = local_context(
            tmp_path / f"b{len(made)}", engine="docker", docker_host=podman_socket, **local
        )
        backend = context.backend
        assert isinstance(backend, LocalBackend)
        made.append((context, backend))
        return backend

    yield make
    for context, backend in made:
        backend.close()
        context.engine.dispose()


@pytest.mark.parametrize("network", ["none", "host"])
def test_a_function_cannot_run_another_namespaces_warm_instance(
    backend_for: Callable[..., LocalBackend], function_image: Callable[..., ImageRef], network: str
) -> None:
    backend = backend_for(network=network)
    backend.deploy(make_release("victim", "1.0.0", function_image("victim", "1.0.0", VICTIM), "xfel"))
    assert backend.invoke("xfel", "victim", {}).result["victim"] is True  # warm and listening
    backend.deploy(make_release("knock", "1.0.0", function_image("knock", "1.0.0", KNOCK), "intruder"))

    attack = backend.invoke("intruder", "knock", {})

    assert attack.status == "success", attack.result
    assert attack.result["ran_victim"] == [], attack.result
    if network == "host":  # sharing the host network, the victim's proxy refuses a request without its token
        [victim] = [pool for key, pool in backend._pools.items() if key[1] == "victim"]
        assert victim.workers[0].instance.endpoint.port in attack.result["refused"], attack.result


def storage_with_two_namespaces(backend: LocalBackend) -> Path:
    root = Path(backend.settings.storage.local.root).absolute()
    (root / "xfel-raw").mkdir(parents=True)
    (root / "xfel-raw" / "secret.h5").write_text("another namespace's data")
    (root / "incoming").mkdir()
    (root / "incoming" / "run1.txt").write_text("input")
    return root


def run_files(backend: LocalBackend, root: Path) -> dict[str, object]:
    params = {
        "other": str(root / "xfel-raw" / "secret.h5"),
        "input": str(root / "incoming"),
        "output": str(root / "results"),
    }
    run = backend.invoke("intruder", "files", params)
    assert run.status == "success", run.result
    return dict(run.result)


def test_a_function_sees_only_its_trigger_folders_read_only_and_runs_as_a_fixed_user(
    backend_for: Callable[..., LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    backend = backend_for()
    root = storage_with_two_namespaces(backend)
    release = make_release("files", "1.0.0", function_image("files", "1.0.0", FILES), "intruder")
    backend.deploy(release)
    backend.bind(release, [StorageTrigger(source="local", path="/incoming")])

    result = run_files(backend, root)

    assert result["read_other_namespace"] == "No such file or directory"  # not even mounted
    assert result["write_trigger_folder"] == "Read-only file system"
    assert result["read_input"] == "ok"
    assert not (root / "incoming" / "planted.txt").exists()
    # A fixed unprivileged user, not the owner of the storage root (which is left as it was).
    assert result["uid"] == 1000 != root.stat().st_uid


def test_the_output_folder_is_the_only_one_a_function_writes(
    backend_for: Callable[..., LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    backend = backend_for()
    root = storage_with_two_namespaces(backend)
    image = function_image("files", "1.0.0", FILES)
    release = make_release("files", "1.0.0", image, "intruder", output="/results")
    backend.deploy(release)
    backend.bind(release, [StorageTrigger(source="local", path="/incoming")])

    result = run_files(backend, root)

    assert result["write_output_folder"] == "ok" and result["write_trigger_folder"] == "Read-only file system"
    assert (root / "results" / "result.txt").read_text() == "y"
    assert result["read_other_namespace"] == "No such file or directory"


def test_a_function_cannot_exhaust_processes_and_has_cpu_and_memory_limits(
    backend_for: Callable[..., LocalBackend], function_image: Callable[..., ImageRef]
) -> None:
    backend = backend_for()  # the defaults: 256 processes, one CPU
    release = make_release("threads", "1.0.0", function_image("threads", "1.0.0", THREADS), "intruder")
    backend.deploy(release)

    run = backend.invoke("intruder", "threads", {"n": 1000})

    assert run.status == "success", run.result
    assert run.result["started"] < 256 and "new thread" in run.result["failure"], run.result
    [pool] = backend._pools.values()
    [worker] = pool.workers
    host = worker.instance.container.attrs["HostConfig"]  # type: ignore[attr-defined]
    assert host["PidsLimit"] == 256
    assert host["Memory"] == release.source.manifest.limits.memory * 1024 * 1024
    assert host.get("NanoCpus") == 10**9 or host["CpuQuota"] == host["CpuPeriod"] > 0, json.dumps(host)


def test_auto_engine_never_falls_back_to_host_processes(
    tmp_path: Path, function_image: Callable[..., ImageRef], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no podman here
    context = local_context(tmp_path, engine="auto")
    backend = context.backend
    assert isinstance(backend, LocalBackend)
    backend.deploy(make_release("victim", "1.0.0", function_image("victim", "1.0.0", VICTIM), "grp"))
    try:
        with pytest.raises(FaaspubError, match="no container engine") as refused:
            backend.invoke("grp", "victim", {})
        assert "engine = 'process'" in (refused.value.hint or "")
        assert not (context.settings.state_path / "rootfs").exists()  # nothing was unpacked to run
    finally:
        backend.close()
        context.engine.dispose()


def test_the_process_engine_is_reported_when_chosen() -> None:
    from publisher.backends.executor import isolation_warning

    # What faaspub status shows (and the service logs once) for an unisolated engine.
    chosen = Settings.model_validate({"backend": {"local": {"engine": "process"}}})
    assert "NOT isolated" in (isolation_warning(chosen) or "")
    assert isolation_warning(Settings()) is None
