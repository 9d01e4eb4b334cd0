"""The tester of ``faaspub dev``: a warm runner container per function, fed each saved version.

A run of :class:`~publisher.tester.container.ContainerTester` starts two containers and an
interpreter that imports pytest: seconds. Here the function's test image runs once as a runner
(:mod:`publisher.tester.agent`: pytest imported, one fork per run) and every save sends it the code
and tests as they are on disk, the same files the builder just put in the image. The runner is
replaced only when what lies below the code changes (runtime, requirements, test requirements).
The examples run against the handler in the same child; the protocol itself is exercised by the
invoke that follows the deploy.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException
from docker.models.containers import Container

from publisher.build import inputs
from publisher.build.deps import requirement_lines
from publisher.config import Settings
from publisher.core.types import BuiltImage, FunctionSource, TestReport
from publisher.errors import FaaspubError
from publisher.oci.engine import engine_client
from publisher.tester import junit
from publisher.tester.container import (
    PYTEST_TIMEOUT_S,
    example_case,
    free_port,
    pytest_cases,
    report_of,
    start_container,
)

AGENT = Path(__file__).with_name("agent.py")
START_TIMEOUT_S = 30.0


def runner_key(fn: FunctionSource) -> str:
    """What the runner's image holds below the code: a change here needs a new runner."""
    sha = hashlib.sha256(fn.manifest.runtime.encode())
    for path in (inputs.requirements_file(fn), inputs.test_requirements_file(fn)):
        lines = requirement_lines(path, fn.root) if path else []
        sha.update(json.dumps(lines).encode())
    return sha.hexdigest()


class WarmTester:
    """:class:`~publisher.core.parts.Tester` that keeps one runner container between runs; ``close`` it."""

    def __init__(self, settings: Settings, docker_host: str | None = None) -> None:
        self.settings = settings
        self.docker_host = docker_host
        self._client: docker.DockerClient | None = None
        self._runner: Container | None = None
        self._key = ""
        self._port = 0
        self._http = requests.Session()

    def test(self, fn: FunctionSource, image: BuiltImage, junit_path: Path | None = None) -> TestReport:
        if image.test_ref is None:
            raise FaaspubError(
                f"{fn.name}: the test suite could not be run: {image.ref.pinned} has no test image"
            )
        self._ensure_runner(fn, image)
        files = {**inputs.code_files(fn), **inputs.test_files(fn)}
        encoded = {rel: base64.b64encode(path.read_bytes()).decode() for rel, path in files.items()}
        encoded[inputs.HANDLER_CONFIG] = base64.b64encode(inputs.handler_config_bytes(fn, "dev")).decode()
        doc: dict[str, Any] = {
            "files": encoded,
            "tests": fn.manifest.tests.path,
            "command": fn.manifest.tests.command,
            "examples": [example.input for example in fn.manifest.examples],
            "timeout": PYTEST_TIMEOUT_S,
        }
        answer = self._run(doc)
        seconds = float(answer.get("seconds") or 0.0)
        status = int(answer.get("status", -1))
        cases = pytest_cases(
            status, answer.get("junit") or "", fn.manifest.tests.command, seconds, answer.get("output", "")
        )
        for index, (example, outcome) in enumerate(
            zip(fn.manifest.examples, answer.get("examples") or [], strict=False)
        ):
            name = f"example {index + 1}" + (f": {example.name}" if example.name else "")
            if "error" in outcome:
                cases.append(junit.Case("examples", name, "failed", 0.0, str(outcome["error"])))
            else:
                cases.append(
                    example_case("examples", name, example.input, example.expect, outcome["result"], 0.0)
                )
        if junit_path is not None:
            junit.write(cases, junit_path)
        return report_of(cases, junit_path)

    def _run(self, doc: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = self._http.post(
                f"http://127.0.0.1:{self._port}/run", json=doc, timeout=PYTEST_TIMEOUT_S + 30
            )
        except requests.RequestException as exc:
            self._stop_runner()  # started afresh next time
            raise FaaspubError(f"the test runner did not answer: {exc}") from None
        if resp.status_code != 200:
            self._stop_runner()
            raise FaaspubError(f"the test runner failed: {resp.text[-500:]}")
        answer: dict[str, Any] = resp.json()
        return answer

    def _ensure_runner(self, fn: FunctionSource, image: BuiltImage) -> None:
        key = runner_key(fn)
        if self._runner is not None and key == self._key and self._alive():
            return
        self._stop_runner()
        assert image.test_ref is not None
        if self._client is None:
            self._client = engine_client(self.settings, self.docker_host)
        self._port = free_port()
        self._runner = start_container(
            self._client,
            self.settings,
            image.test_ref,
            command=["python3", "-c", AGENT.read_text(encoding="utf-8")],
            environment={"FAASPUB_AGENT_PORT": str(self._port)},
            labels={"io.faaspub.role": "dev-test-runner"},
        )
        self._key = key
        self._wait_ready()

    def _alive(self) -> bool:
        assert self._runner is not None
        try:
            self._runner.reload()
        except DockerException:
            return False
        return self._runner.status == "running"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                self._http.get(f"http://127.0.0.1:{self._port}/", timeout=1)
                return
            except requests.ConnectionError:
                if not self._alive():
                    break
                time.sleep(0.02)
        logs = self._runner.logs().decode("utf-8", "replace")[-1000:] if self._runner else ""
        self._stop_runner()
        raise FaaspubError(f"the test runner did not start: {logs.strip() or 'no output'}")

    def _stop_runner(self) -> None:
        if self._runner is not None:
            with suppress(APIError, DockerException):
                self._runner.remove(force=True)
        self._runner = None

    def close(self) -> None:
        """Remove the runner container and close the engine connection."""
        self._stop_runner()
        self._http.close()
        if self._client is not None:
            self._client.close()
            self._client = None
