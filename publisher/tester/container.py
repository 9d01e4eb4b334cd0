"""The container tester: the function's pytest suite in its test image, then the protocol smoke test.

Both run through a container engine's Docker-compatible API (Docker, or podman's
``podman system service``) with the docker SDK: host networking always (bridge networking changes
the host), a read-only root, ``/tmp`` as tmpfs, user 1000 and an init process. The smoke test
starts the shipped image, sends ``POST /init`` and one ``POST /run`` per ``examples`` entry, and
checks that each result contains the expected subset. Every container is removed afterwards.
"""

from __future__ import annotations

import json
import shlex
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException
from docker.models.containers import Container

from publisher.config import Settings
from publisher.core.types import BuiltImage, FunctionSource, ImageRef, TestReport
from publisher.errors import FaaspubError
from publisher.oci.engine import engine_client, provide
from publisher.tester import junit
from publisher.tester.compare import subset_differences

JUNIT_FILE = "/tmp/faaspub-junit.xml"
JUNIT_MARKER = "----- faaspub junit report -----"
PYTEST_TIMEOUT_S = 600
START_TIMEOUT_S = 30.0
RUN_USER = "1000"
_LOG_TAIL = 40


def has_tests(fn: FunctionSource) -> bool:
    """Whether the function has a tests folder with something in it (``faaspub validate`` wants one)."""
    folder = fn.root / fn.manifest.tests.path
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ContainerTester:
    """:class:`~publisher.core.parts.Tester` on a Docker API socket (``DOCKER_HOST``)."""

    def __init__(self, settings: Settings, docker_host: str | None = None) -> None:
        self.settings = settings
        self.docker_host = docker_host

    def _client(self) -> docker.DockerClient:
        client: docker.DockerClient = engine_client(self.settings, self.docker_host)
        return client

    def test(self, fn: FunctionSource, image: BuiltImage, junit_path: Path | None = None) -> TestReport:
        client = self._client()
        try:
            cases: list[junit.Case] = []
            if image.test_ref is not None:
                cases += self._pytest(client, fn, image.test_ref)
            elif has_tests(fn):
                reason = f"the test suite could not be run: no test image belongs to {image.ref.pinned}"
                cases.append(junit.Case("pytest", fn.manifest.tests.path, "error", 0.0, reason))
            cases += self._smoke(client, fn, image.ref)
        finally:
            client.close()
        if junit_path is not None:
            junit.write(cases, junit_path)
        return report_of(cases, junit_path)

    # -- pytest in the test image --------------------------------------------------------------

    def _pytest(self, client: docker.DockerClient, fn: FunctionSource, ref: ImageRef) -> list[junit.Case]:
        tests = fn.manifest.tests
        if tests.command:
            command = ["/bin/sh", "-c", tests.command]
        else:
            # The report leaves through stdout after a marker: a bind mount would be resolved on the
            # engine's host (wrong in CI jobs that talk to a shared socket) and the root is read-only.
            pytest = (
                f"python3 -m pytest -p no:cacheprovider -q --junitxml={JUNIT_FILE} {shlex.quote(tests.path)}"
            )
            command = [
                "/bin/sh",
                "-c",
                f"{pytest}; rc=$?; printf '\\n{JUNIT_MARKER}\\n'; cat {JUNIT_FILE}; exit $rc",
            ]
        started = time.monotonic()
        with _container(client, self.settings, ref, command=command) as container:
            status = _wait(container, PYTEST_TIMEOUT_S)
            logs = _logs(container)
            stdout = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
        _, marker, xml = stdout.rpartition(f"\n{JUNIT_MARKER}\n")
        return pytest_cases(status, xml if marker else "", tests.command, time.monotonic() - started, logs)

    # -- runtime protocol smoke test -----------------------------------------------------------

    def _smoke(self, client: docker.DockerClient, fn: FunctionSource, ref: ImageRef) -> list[junit.Case]:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        timeout_s = fn.manifest.limits.timeout_ms / 1000 + 5
        env = {"FAASPUB_PROXY_HOST": "127.0.0.1", "FAASPUB_PROXY_PORT": str(port)}
        with _container(client, self.settings, ref, environment=env) as container:
            started = time.monotonic()
            try:
                _wait_listening(container, port)
                resp = requests.post(
                    f"{base}/init",
                    json={"value": {"name": fn.name, "main": "main", "env": {}}},
                    timeout=timeout_s,
                )
                if resp.status_code != 200:
                    raise _SmokeFailure(f"POST /init answered {resp.status_code}: {resp.text[:500]}")
            except (_SmokeFailure, requests.RequestException) as exc:
                detail = _logs(container)
                return [junit.Case("smoke", "init", "failed", time.monotonic() - started, str(exc), detail)]
            cases = [junit.Case("smoke", "init", "passed", time.monotonic() - started)]
            for index, example in enumerate(fn.manifest.examples):
                name = f"example {index + 1}" + (f": {example.name}" if example.name else "")
                cases.append(self._example(base, name, example.input, example.expect, timeout_s, container))
        return cases

    @staticmethod
    def _example(
        base: str, name: str, given: dict[str, Any], expect: Any, timeout_s: float, container: Container
    ) -> junit.Case:
        started = time.monotonic()
        payload = {
            "value": given,
            "activation_id": "faaspub-smoke",
            "deadline": int((time.time() + timeout_s) * 1000),
        }
        try:
            resp = requests.post(f"{base}/run", json=payload, timeout=timeout_s)
        except requests.RequestException as exc:
            return junit.Case(
                "smoke",
                name,
                "error",
                time.monotonic() - started,
                f"POST /run failed: {exc}",
                _logs(container),
            )
        seconds = time.monotonic() - started
        try:
            result = resp.json()
        except ValueError:
            result = None
        if resp.status_code != 200:
            return junit.Case(
                "smoke",
                name,
                "failed",
                seconds,
                f"POST /run answered {resp.status_code}: {resp.text[:300]}",
                f"input: {json.dumps(given)}\n\n{_logs(container)}",
            )
        return example_case("smoke", name, given, expect, result, seconds)


class _SmokeFailure(Exception):
    pass


def pytest_cases(status: int, xml: str, command: str | None, seconds: float, logs: str) -> list[junit.Case]:
    """The cases of one pytest run (or ``tests.command``) from its exit status and JUnit XML, if any."""
    if xml.strip():
        with tempfile.TemporaryDirectory(prefix="faaspub-junit-") as tmp:
            report = Path(tmp) / "pytest.xml"
            report.write_text(xml, encoding="utf-8")
            cases = junit.read_pytest(report)
        if status not in (0, 1) and not any(c.outcome in ("failed", "error") for c in cases):
            cases.append(junit.Case("pytest", "pytest run", "error", seconds, f"exit {status}", logs))
        return cases
    if status == 0:
        return [junit.Case("pytest", command or "pytest", "passed", seconds)]
    if status == 5:  # pytest: no tests collected
        return [junit.Case("pytest", "pytest", "skipped", seconds, "no tests collected")]
    return [junit.Case("pytest", command or "pytest", "error", seconds, f"exit {status}", logs)]


def example_case(suite: str, name: str, given: Any, expect: Any, result: Any, seconds: float) -> junit.Case:
    """Passed when ``result`` contains ``expect`` (a subset); else failed with the differences."""
    diffs = subset_differences(expect, result) if expect is not None else []
    if not diffs:
        return junit.Case(suite, name, "passed", seconds)
    detail = "\n".join(
        [
            f"input:    {json.dumps(given, sort_keys=True)}",
            f"expected: {json.dumps(expect, sort_keys=True)} (subset)",
            f"actual:   {json.dumps(result, sort_keys=True)}",
            "differences:",
            *(f"  {d}" for d in diffs),
        ]
    )
    return junit.Case(suite, name, "failed", seconds, diffs[0], detail)


def start_container(
    client: docker.DockerClient, settings: Settings, ref: ImageRef, **options: Any
) -> Container:
    """A started container of ``ref`` with faaspub's fixed isolation (the caller removes it)."""
    started: Container = client.containers.run(
        provide(client, settings, ref.pinned, ref.digest or None),
        detach=True,
        network_mode="host",
        read_only=True,
        tmpfs={"/tmp": "rw,size=256m"},
        user=RUN_USER,
        init=True,
        **options,
    )
    return started


@contextmanager
def _container(
    client: docker.DockerClient, settings: Settings, ref: ImageRef, **options: Any
) -> Iterator[Container]:
    """:func:`start_container`, always removed afterwards."""
    container = start_container(client, settings, ref, **options)
    try:
        yield container
    finally:
        with suppress(APIError, DockerException):
            container.remove(force=True)


def _wait(container: Container, timeout: float) -> int:
    try:
        result = container.wait(timeout=timeout)
    except requests.RequestException:
        raise FaaspubError(
            f"tests in {container.image.tags or container.id} ran longer than {timeout:.0f}s"
        ) from None
    return int(result.get("StatusCode", -1))


def _wait_listening(container: Container, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        container.reload()
        if container.status not in ("created", "running"):
            raise _SmokeFailure(f"the function container exited ({container.status}) before listening")
        time.sleep(0.05)
    raise _SmokeFailure(f"the runtime proxy did not listen on port {port} within {START_TIMEOUT_S:.0f}s")


def _logs(container: Container) -> str:
    try:
        text = container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    except (APIError, DockerException):
        return ""
    return "\n".join(text.splitlines()[-_LOG_TAIL:])


def report_of(cases: list[junit.Case], path: Path | None) -> TestReport:
    report = TestReport(junit_path=path)
    for case in cases:
        if case.outcome == "passed":
            report.passed += 1
        elif case.outcome == "skipped":
            report.skipped += 1
        else:
            if case.outcome == "failed":
                report.failed += 1
            else:
                report.errors += 1
            report.failures.append(f"{case.suite}: {case.name}: {case.message}\n{case.detail}".rstrip())
    return report
